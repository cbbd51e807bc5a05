//! placeholder: result types (being written)
