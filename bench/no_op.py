"""The yardstick of bench/throughput.py, in a module of its own: the sandbox re-imports a
workflow's module, and the bench's own imports (sys.path, the worker) are not allowed there."""

from temporalio import workflow


@workflow.defn
class NoOpWorkflow:
    """A workflow that completes in its first task."""

    @workflow.run
    async def run(self) -> None:
        return None
