//! The CNI_PATH of the plugin tests that chain Ferry with the reference
//! plugins.

/// A CNI_PATH directory: Ferry for every type it implements but
/// `reference_for`, the reference plugin for that one and every other type.
pub fn plugin_dir(reference_for: Option<&str>) -> tempfile::TempDir {
    ferry_testkit::cni_path(
        env!("CARGO_BIN_EXE_ferry-plugin"),
        ferry_plugins::REGISTRY
            .iter()
            .map(|e| e.name)
            .filter(|n| Some(*n) != reference_for),
    )
}
