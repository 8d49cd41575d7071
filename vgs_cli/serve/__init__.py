"""`vgs serve`: a web page and an HTTP API (Gradio) that turn a video into sound with models kept warm.

Layer: like `cli/`, an orchestrator above the middle packages (it may import `generate`, `loading` and
below; nothing but `cli` imports it). Only `page.py` and `server.py` import gradio, and only when the
server starts: `import vgs_cli` and the core install never need the `[serve]` extra.
"""
