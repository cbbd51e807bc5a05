//! The version module: parsing, ordering, selection and the VERSION reply.

use ferry_cni::version::{self, PluginInfo, Version, CURRENT, SUPPORTED};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn constants() {
    assert_eq!(CURRENT, "1.1.0");
    assert_eq!(
        SUPPORTED,
        ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    );
    let mut sorted: Vec<Version> = SUPPORTED.iter().map(|v| v.parse().unwrap()).collect();
    sorted.sort();
    let back: Vec<String> = sorted.iter().map(Version::to_string).collect();
    assert_eq!(back, SUPPORTED);
    assert_eq!(SUPPORTED.last(), Some(&CURRENT));
}

#[test]
fn parse_and_compare() {
    assert_eq!(version::parse("").unwrap(), Version::new(0, 1, 0));
    assert_eq!(version::parse("0.3.1").unwrap().to_string(), "0.3.1");
    assert_eq!(version::parse("1.0").unwrap(), Version::new(1, 0, 0));
    for bad in ["1.2.3.4", "x", "1.x", "1.0.0-rc1", "v1.0.0", ".1"] {
        let e = version::parse(bad).unwrap_err();
        assert_eq!(e.code, 6, "{bad}");
        assert!(e.details.contains(bad), "{e}");
    }
    assert!(version::greater_than("1.0.0", "0.4.0").unwrap());
    assert!(!version::greater_than("0.4.0", "0.4.0").unwrap());
    assert!(version::greater_than_or_equal_to("0.4.0", "0.4.0").unwrap());
    assert!(version::greater_than_or_equal_to("0.10.0", "0.9.0").unwrap());
    assert_eq!(version::greater_than("a", "1.0.0").unwrap_err().code, 6);
}

#[test]
fn supported_is_exact() {
    for v in SUPPORTED {
        assert!(version::is_supported(v));
    }
    assert!(version::is_supported(""), "an empty version is 0.1.0");
    for v in ["1.0", "1", "0.5.0", "1.2.0", "2.0.0", " 1.0.0"] {
        assert!(!version::is_supported(v), "{v}");
    }
}

#[test]
fn pick_highest_of_config_versions() {
    assert_eq!(
        version::pick_highest(&s(&["0.3.1", "1.0.0", "0.4.0"]), SUPPORTED),
        Some("1.0.0".to_string())
    );
    // Entries the other side does not support are ignored.
    assert_eq!(
        version::pick_highest(&s(&["1.1.0", "9.0.0", "0.4.0"]), &["0.4.0", "1.0.0"]),
        Some("0.4.0".to_string())
    );
    // Numeric, not lexical, comparison; the supported spelling is returned.
    assert_eq!(
        version::pick_highest(
            &s(&["0.10.0", "0.9.0", "1.0"]),
            &["0.9.0", "0.10.0", "1.0.0"]
        ),
        Some("1.0.0".to_string())
    );
    assert_eq!(version::pick_highest(&s(&["garbage", ""]), SUPPORTED), None);
    assert_eq!(version::pick_highest(&[], SUPPORTED), None);
}

#[test]
fn select_config_version_like_libcni() {
    assert_eq!(
        version::select_config_version("0.4.0", None).unwrap(),
        "0.4.0"
    );
    assert_eq!(
        version::select_config_version("0.4.0", Some(&s(&["1.0.0", "0.3.1"]))).unwrap(),
        "1.0.0"
    );
    // Versions newer than what Ferry implements are skipped.
    assert_eq!(
        version::select_config_version("1.0.0", Some(&s(&["1.1.0", "2.0.0", "1.5.0"]))).unwrap(),
        "1.1.0"
    );
    assert_eq!(
        version::select_config_version("", Some(&s(&["3.0.0"]))).unwrap(),
        ""
    );
    let e = version::select_config_version("1.0.0", Some(&s(&["1.0.0", "x.y"]))).unwrap_err();
    assert_eq!(e.code, 6);
    assert!(e.details.contains("index 1"), "{e}");
}

#[test]
fn plugin_info_json_and_check() {
    let all = PluginInfo::all();
    assert_eq!(
        serde_json::to_string(&all).unwrap(),
        r#"{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
    );
    let info =
        PluginInfo::decode(br#"{"cniVersion":"1.0.0","supportedVersions":["0.3.1","1.0.0"]}"#)
            .unwrap();
    assert_eq!(info.supported_versions, ["0.3.1", "1.0.0"]);
    info.check("1.0.0").unwrap();
    let e = info.check("1.1.0").unwrap_err();
    assert_eq!(e.code, 1);
    assert_eq!(e.msg, "incompatible CNI versions");
    assert_eq!(
        e.details,
        r#"config is "1.1.0", plugin supports ["0.3.1" "1.0.0"]"#
    );
    assert_eq!(e.cni_version, "1.1.0");

    // A 0.2.0 plugin without supportedVersions means 0.1.0 and 0.2.0.
    let legacy = PluginInfo::decode(br#"{"cniVersion":"0.2.0"}"#).unwrap();
    assert_eq!(legacy.supported_versions, ["0.1.0", "0.2.0"]);
    assert!(legacy.is_supported(""));
    for bad in [
        &br#"{"cniVersion":"0.3.0"}"#[..],
        br#"{"supportedVersions":["1.0.0"]}"#,
        b"nope",
    ] {
        assert_eq!(PluginInfo::decode(bad).unwrap_err().code, 6);
    }
    assert_eq!(
        PluginInfo::starting_from("0.4.0")
            .unwrap()
            .supported_versions,
        ["0.4.0", "1.0.0", "1.1.0"]
    );
    assert_eq!(
        PluginInfo::legacy().with_cni_version("0.2.0").cni_version,
        "0.2.0"
    );
}
