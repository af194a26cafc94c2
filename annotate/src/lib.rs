//! tiller-annotate: see ../shared/DESIGN.md. Filled in by its own issue.
