"""The dashboards' files (`static/`): plain HTML, CSS and ES modules, no build step, served by
the RPC server under `/dashboard/` (`ogpu_node.rpc.dashboard_files`). See docs/dashboards.md."""
