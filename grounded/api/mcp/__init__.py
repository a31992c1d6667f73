"""grounded as a Model Context Protocol server (the official ``mcp`` SDK).

- ``grounded mcp [--kb DIR] [--key KEY]``: over stdio, for a local agent (Claude Desktop,
  an IDE); the key (or ``$GROUNDED_API_KEY``) picks whose documents it answers from.
- ``/mcp`` on ``grounded serve``: streamable HTTP, each request with its caller's API key.

Tools ``search``, ``ask``, ``sql``, ``sources``; resource ``grounded://doc/{doc_id}{?start,end}``.
See ``docs/integrations/mcp.md``.
"""

from grounded.api.mcp.server import DOC_URI, build_server, read_document

__all__ = ["DOC_URI", "build_server", "read_document"]
