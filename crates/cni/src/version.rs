//! placeholder: versions (being written)
