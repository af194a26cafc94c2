//! tiller-policy: see ../shared/DESIGN.md. Filled in by its own issue.
