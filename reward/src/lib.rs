//! tiller-reward: see ../shared/DESIGN.md. Filled in by its own issue.
