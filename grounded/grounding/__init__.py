"""The grounding layer: before the writer speaks, decide what evidence a question needs and fetch it.

    router (route + reason) ─► planner (rules, or the tool-call expert under constrained
    decoding) ─► executor (tool calls in parallel/sequence, with timeouts) ─► Grounding

:class:`~grounded.grounding.grounder.Grounder` runs the three for one question on the request's
:class:`~grounded.store.View`; the answering stage turns its results into citations.
"""
