"""Operations: API keys, refresh jobs and the scheduler, metrics and logs.

:mod:`~grounded.ops.keys` maps a request's API key to a :class:`~grounded.access.Principal`;
:mod:`~grounded.ops.scheduler` refreshes sources on their schedules (one refresh per source at a
time, retries by error kind) and records :mod:`~grounded.ops.jobs`; :mod:`~grounded.ops.metrics`
is what ``/metrics`` shows; :mod:`~grounded.ops.logs` configures JSON logs.
"""
