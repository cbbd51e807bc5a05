//! Ferry's `host-local` against the reference `/usr/lib/cni/host-local`
//! (Debian containernetworking-plugins 1.1.1, cniVersion up to 1.0.0).
//!
//! Same configs, same requests, each on its own data directory: the printed
//! results must be equal (JSON compared with whitespace removed and key order
//! kept, see `Out::canonical`) and the reservation and `last_reserved_ip.*`
//! files must be equal byte for byte.
//!
//! Known differences, each asserted below where it shows:
//! - error codes: the reference prints 999 for everything but malformed JSON
//!   (6); Ferry prints 6 for malformed JSON or a key of the wrong type, 7 for
//!   invalid config, 4 for bad CNI_ARGS, 11 for a lock failure, 100 for
//!   allocation failures;
//! - a requested address outside every range: the reference first allocates
//!   (and releases) a dynamic address in every other range set, so its
//!   `last_reserved_ip.*` moves; Ferry checks first and changes nothing;
//! - Ferry keeps `ferry-index/` (release hints) next to the leases while an
//!   attachment holds addresses; it is gone once they are all released;
//! - CNI_ARGS `IP` may list several addresses separated by commas in Ferry;
//!   the reference rejects that;
//! - STATUS and GC exist only in CNI 1.1.0, which the reference does not
//!   speak: they are tested against Ferry alone, with cross-use of the state.
//!
//! Run: `cargo test -p ferry-plugins --test ipam_host_local` (as root, with
//! containernetworking-plugins installed).

#[path = "ipam_support.rs"]
mod support;

use serde_json::{json, Value};
use support::*;

/// Two data directories, one per implementation, for the same network.
struct Pair {
    bins: Bins,
    r: tempfile::TempDir,
    f: tempfile::TempDir,
    name: String,
}

/// One step of a differential scenario.
struct Step {
    command: &'static str,
    cid: &'static str,
    ifname: &'static str,
    cni_args: &'static str,
    /// Top-level members merged into the base config for this step.
    top: Value,
    ok: bool,
}

fn step(command: &'static str, cid: &'static str) -> Step {
    Step {
        command,
        cid,
        ifname: "eth0",
        cni_args: "",
        top: json!({}),
        ok: true,
    }
}

impl Step {
    fn ifname(mut self, i: &'static str) -> Step {
        self.ifname = i;
        self
    }
    fn args(mut self, a: &'static str) -> Step {
        self.cni_args = a;
        self
    }
    fn top(mut self, t: Value) -> Step {
        self.top = t;
        self
    }
    fn fails(mut self) -> Step {
        self.ok = false;
        self
    }
}

impl Pair {
    fn new(tag: &str, name: &str) -> Pair {
        Pair {
            bins: Bins::new(),
            r: data_dir(&format!("{tag}-ref")),
            f: data_dir(&format!("{tag}-ferry")),
            name: name.into(),
        }
    }

    fn dir(&self, imp: Impl) -> &std::path::Path {
        match imp {
            Impl::Ferry => self.f.path(),
            Impl::Reference => self.r.path(),
        }
    }

    fn net(&self, imp: Impl) -> std::path::PathBuf {
        self.dir(imp).join(&self.name)
    }

    fn run(&self, imp: Impl, conf: &Value, s: &Step) -> Out {
        let mut c = with_dir(conf, self.dir(imp));
        merge(&mut c, s.top.clone());
        let req = Req::new(s.command, s.cid, &c)
            .ifname(s.ifname)
            .args(s.cni_args);
        run(&self.bins, imp, "host-local", &req)
    }

    /// Runs the step on both; asserts equal output (or both failing) and
    /// equal leases. Returns Ferry's output.
    fn same(&self, label: &str, conf: &Value, s: &Step) -> Out {
        let r = self.run(Impl::Reference, conf, s);
        let f = self.run(Impl::Ferry, conf, s);
        let what = format!(
            "{label}: {} {}/{} {}",
            s.command, s.cid, s.ifname, s.cni_args
        );
        assert_eq!(
            r.success, s.ok,
            "{what}: reference: {}{}",
            r.stdout, r.stderr
        );
        assert_eq!(f.success, s.ok, "{what}: ferry: {}{}", f.stdout, f.stderr);
        if s.ok {
            assert_eq!(f.canonical(), r.canonical(), "{what}: results differ");
        } else {
            assert_eq!(r.err_code(), 999, "{what}: reference code");
        }
        assert_eq!(
            leases(&self.net(Impl::Ferry)),
            leases(&self.net(Impl::Reference)),
            "{what}: leases differ"
        );
        f
    }
}

fn resolv_conf(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("resolv.conf");
    std::fs::write(
        &p,
        "# generated\nnameserver 198.18.64.53\nnameserver fd00:64::53\n\
         domain ferry.test\nsearch a.ferry.test b.ferry.test\noptions ndots:2 timeout:1\n\
         ; ignored\nnameserver\n",
    )
    .expect("write resolv.conf");
    p
}

/// A scenario: ADD/CHECK steps, then every attachment DELeted twice, and
/// a DEL of an attachment that never existed; only `last_reserved_ip.*`
/// may remain, and no `ferry-index/`.
fn scenario(label: &str, version: &str, ipam: Value, top: Value, steps: Vec<Step>) {
    let p = Pair::new(label, &format!("net-{label}"));
    let conf = host_local(version, &p.name, p.f.path(), ipam, top);
    let mut added = Vec::new();
    for s in &steps {
        p.same(label, &conf, s);
        if s.command == "ADD" && s.ok {
            added.push((s.cid, s.ifname));
        }
        if s.command == "DEL" {
            added.retain(|a| *a != (s.cid, s.ifname));
        }
    }
    let checks =
        version != "0.1.0" && version != "0.2.0" && version != "0.3.0" && version != "0.3.1";
    if checks {
        for (cid, ifname) in &added {
            p.same(label, &conf, &step("CHECK", cid).ifname(ifname));
        }
        p.same(label, &conf, &step("CHECK", "never-added").fails());
    }
    let f_net = p.net(Impl::Ferry);
    assert!(
        f_net.join("ferry-index").is_dir() || added.is_empty(),
        "{label}: Ferry keeps its index while leases exist"
    );
    for (cid, ifname) in added.iter().rev() {
        p.same(label, &conf, &step("DEL", cid).ifname(ifname));
        p.same(label, &conf, &step("DEL", cid).ifname(ifname));
    }
    p.same(label, &conf, &step("DEL", "never-added"));
    assert!(reservations(&f_net).is_empty(), "{label}: leases left");
    for k in leases(&f_net).keys() {
        assert!(k.starts_with("last_reserved_ip."), "{label}: {k} left");
    }
    assert!(f_net.join("lock").exists());
    assert!(!f_net.join("ferry-index").exists(), "{label}: index left");
}

#[test]
fn ipv4_with_routes_and_resolv_conf() {
    let tmp = data_dir("resolv");
    let rc = resolv_conf(tmp.path());
    for (i, v) in ["1.0.0", "0.4.0", "0.3.1", "0.3.0"].iter().enumerate() {
        scenario(
            &format!("v4-{i}"),
            v,
            json!({
                "ranges": [[{"subnet": "198.18.64.0/24"}]],
                "routes": [
                    {"dst": "0.0.0.0/0"},
                    {"dst": "198.18.0.0/16", "gw": "198.18.64.9"},
                    {"dst": "198.18.64.128/25"}
                ],
                "resolvConf": rc,
            }),
            json!({}),
            vec![step("ADD", "a"), step("ADD", "b"), step("ADD", "c")],
        );
    }
}

#[test]
fn ipv6_only_until_exhausted() {
    scenario(
        "v6",
        "1.0.0",
        json!({
            "ranges": [[{"subnet": "fd00:64:1::/64", "rangeStart": "fd00:64:1::10",
                         "rangeEnd": "fd00:64:1::12"}]],
            "routes": [{"dst": "::/0"}, {"dst": "fd00:64:2::1/64", "gw": "fd00:64:1::1"}],
        }),
        json!({}),
        vec![
            step("ADD", "a"),
            step("ADD", "b"),
            step("ADD", "c"),
            step("ADD", "d").fails(),
            step("DEL", "b"),
            step("ADD", "e"),
        ],
    );
    // A /126 holds two usable addresses (::1 is the gateway, ::0 the
    // network; IPv6 has no broadcast address).
    scenario(
        "v6small",
        "0.4.0",
        json!({"ranges": [[{"subnet": "fd00:64:2::/126"}]]}),
        json!({}),
        vec![step("ADD", "a"), step("ADD", "b"), step("ADD", "c").fails()],
    );
}

#[test]
fn dual_stack_and_several_interfaces() {
    for (i, v) in ["1.0.0", "0.4.0", "0.3.1"].iter().enumerate() {
        scenario(
            &format!("dual-{i}"),
            v,
            json!({
                "ranges": [
                    [{"subnet": "198.18.65.0/24", "gateway": "198.18.65.254"}],
                    [{"subnet": "fd00:64:3::/64"}]
                ],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
            }),
            json!({}),
            vec![
                step("ADD", "a"),
                step("ADD", "a").ifname("net1"),
                step("ADD", "a").fails(),
                step("ADD", "b"),
                step("DEL", "a"),
                step("ADD", "c"),
            ],
        );
    }
}

#[test]
fn legacy_top_level_range_and_old_versions() {
    scenario(
        "legacy",
        "0.3.1",
        json!({
            "subnet": "198.18.66.0/24", "rangeStart": "198.18.66.100",
            "rangeEnd": "198.18.66.102", "gateway": "198.18.66.1",
            "ranges": [[{"subnet": "fd00:64:4::/64"}]],
        }),
        json!({}),
        vec![
            step("ADD", "a"),
            step("ADD", "b"),
            step("ADD", "c"),
            step("ADD", "d").fails(),
        ],
    );
    scenario(
        "v020",
        "0.2.0",
        json!({
            "subnet": "198.18.69.0/24",
            "ranges": [[{"subnet": "fd00:64:5::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00:64:5::99"}],
        }),
        json!({}),
        vec![step("ADD", "a"), step("ADD", "b")],
    );
    scenario(
        "v010",
        "0.1.0",
        json!({"ranges": [[{"subnet": "198.18.70.0/28"}]]}),
        json!({}),
        vec![step("ADD", "a"), step("ADD", "b")],
    );
}

#[test]
fn range_sets_with_several_ranges_wrap_around() {
    scenario(
        "multi",
        "1.0.0",
        json!({"ranges": [[
            {"subnet": "198.18.67.0/24", "rangeStart": "198.18.67.250"},
            {"subnet": "198.18.68.0/30"}
        ]]}),
        json!({}),
        vec![
            step("ADD", "a"),
            step("ADD", "b"),
            step("ADD", "c"),
            step("ADD", "d"),
            step("ADD", "e"),
            step("ADD", "f"),
            step("ADD", "g").fails(),
            step("DEL", "c"),
            step("ADD", "h"),
            step("DEL", "a"),
            step("DEL", "f"),
            step("ADD", "i"),
            step("ADD", "j"),
        ],
    );
}

#[test]
fn requested_addresses_from_every_source() {
    scenario(
        "req",
        "1.0.0",
        json!({"ranges": [[{"subnet": "198.18.71.0/24"}], [{"subnet": "fd00:64:6::/64"}]]}),
        json!({}),
        vec![
            step("ADD", "a").args("IP=198.18.71.50"),
            step("ADD", "b").args("IP=198.18.71.51/24"),
            step("ADD", "c")
                .top(json!({"args": {"cni": {"ips": ["198.18.71.60/24", "fd00:64:6::60"]}}})),
            step("ADD", "d").top(json!({"runtimeConfig": {"ips": ["fd00:64:6::70/64"]}})),
            // All sources together: the reference honours them all.
            step("ADD", "e")
                .args("IP=198.18.71.80")
                .top(json!({"runtimeConfig": {"ips": ["fd00:64:6::80"]}})),
            step("ADD", "f").args("IgnoreUnknown=1;K8S_POD_NAME=x;IP=198.18.71.90"),
            // Round robin goes on after the last reserved address.
            step("ADD", "g"),
            // The same address twice is one request.
            step("ADD", "h")
                .args("IP=198.18.71.100")
                .top(json!({"args": {"cni": {"ips": ["198.18.71.100"]}}})),
            // Taken, gateway, outside, two in one set, unknown CNI_ARGS.
            step("ADD", "x").args("IP=198.18.71.50").fails(),
            step("ADD", "x").args("IP=198.18.71.1").fails(),
            step("ADD", "x").args("K8S_POD_NAME=x").fails(),
        ],
    );
}

#[test]
fn ip_ranges_capability_is_prepended() {
    scenario(
        "ipranges",
        "1.0.0",
        json!({"ranges": [[{"subnet": "fd00:64:7::/64"}]]}),
        json!({"runtimeConfig": {"ipRanges": [[{"subnet": "198.18.72.0/24", "rangeStart": "198.18.72.10"}]]}}),
        vec![step("ADD", "a"), step("ADD", "b").args("IP=198.18.72.20")],
    );
    scenario(
        "iprangesonly",
        "0.4.0",
        json!({}),
        json!({"runtimeConfig": {"ipRanges": [[{"subnet": "fd00:64:8::/64"}], [{"subnet": "198.18.75.0/24"}]]}}),
        vec![step("ADD", "a"), step("ADD", "b")],
    );
}

/// Bad requests: the code Ferry prints, and nothing changed on disk.
#[test]
fn bad_requests_change_nothing() {
    let p = Pair::new("bad", "net-bad");
    let good = json!({"ranges": [[{"subnet": "198.18.73.0/24"}], [{"subnet": "fd00:64:9::/64"}]]});
    let conf = host_local("1.0.0", &p.name, p.f.path(), good.clone(), json!({}));
    p.same("bad", &conf, &step("ADD", "pre"));
    let fresh = |ipam: Value| host_local("1.0.0", &p.name, p.f.path(), ipam, json!({}));

    struct Case {
        label: &'static str,
        conf: Value,
        raw: Option<&'static str>,
        s: Step,
        code: u64,
        /// What the reference changes although it fails.
        reference_changes: &'static [&'static str],
    }
    let case = |label, conf: Value, s: Step, code| Case {
        label,
        conf,
        raw: None,
        s,
        code,
        reference_changes: &[],
    };
    let cases = vec![
        case(
            "subnet too small",
            fresh(json!({"ranges": [[{"subnet": "198.18.73.0/31"}]]})),
            step("ADD", "x"),
            7,
        ),
        case(
            "v6 subnet too small",
            fresh(json!({"ranges": [[{"subnet": "fd00:64:9::/127"}]]})),
            step("ADD", "x"),
            7,
        ),
        case("missing ranges", fresh(json!({})), step("ADD", "x"), 7),
        case(
            "empty range set",
            fresh(json!({"ranges": [[]]})),
            step("ADD", "x"),
            7,
        ),
        case(
            "host bits",
            fresh(json!({"ranges": [[{"subnet": "198.18.73.5/24"}]]})),
            step("ADD", "x"),
            7,
        ),
        case(
            "rangeStart outside",
            fresh(json!({"ranges": [[{"subnet": "198.18.73.0/24", "rangeStart": "198.18.74.1"}]]})),
            step("ADD", "x"),
            7,
        ),
        case(
            "overlapping sets",
            fresh(
                json!({"ranges": [[{"subnet": "198.18.73.0/24"}], [{"subnet": "198.18.73.128/25"}]]}),
            ),
            step("ADD", "x"),
            7,
        ),
        case(
            "mixed families",
            fresh(
                json!({"ranges": [[{"subnet": "198.18.73.0/24"}, {"subnet": "fd00:64:9::/64"}]]}),
            ),
            step("ADD", "x"),
            7,
        ),
        case(
            "two v4 sets in 0.2.0",
            {
                let mut c = fresh(
                    json!({"ranges": [[{"subnet": "198.18.73.0/25"}], [{"subnet": "198.18.73.128/25"}]]}),
                );
                c["cniVersion"] = json!("0.2.0");
                c
            },
            step("ADD", "x"),
            7,
        ),
        case(
            "missing ipam",
            json!({"cniVersion": "1.0.0", "name": p.name, "type": "bridge"}),
            step("ADD", "x"),
            7,
        ),
        case(
            "ranges of the wrong type",
            fresh(json!({"ranges": "198.18.73.0/24"})),
            step("ADD", "x"),
            6,
        ),
        case(
            "resolvConf missing",
            fresh(
                json!({"ranges": good["ranges"], "resolvConf": "/nonexistent/ferry-resolv.conf"}),
            ),
            step("ADD", "x"),
            7,
        ),
        case(
            "requested taken",
            conf.clone(),
            step("ADD", "x").args("IP=198.18.73.2"),
            100,
        ),
        Case {
            label: "requested gateway",
            conf: conf.clone(),
            raw: None,
            s: step("ADD", "x").args("IP=fd00:64:9::1"),
            code: 100,
            reference_changes: &["last_reserved_ip.0"],
        },
        Case {
            label: "requested twice in one set",
            conf: conf.clone(),
            raw: None,
            s: step("ADD", "x")
                .top(json!({"runtimeConfig": {"ips": ["198.18.73.9", "198.18.73.10"]}})),
            code: 100,
            reference_changes: &["last_reserved_ip.0", "last_reserved_ip.1"],
        },
        case(
            "requested not an address",
            conf.clone(),
            step("ADD", "x").top(json!({"args": {"cni": {"ips": ["bogus"]}}})),
            7,
        ),
        case(
            "bad CNI_ARGS value",
            conf.clone(),
            step("ADD", "x").args("IP=bogus"),
            4,
        ),
        case(
            "unknown CNI_ARGS",
            conf.clone(),
            step("ADD", "x").args("FOO=bar"),
            4,
        ),
        case("duplicate ADD", conf.clone(), step("ADD", "pre"), 100),
        Case {
            label: "requested outside every range",
            conf: conf.clone(),
            raw: None,
            s: step("ADD", "x").args("IP=198.18.74.5"),
            code: 100,
            reference_changes: &["last_reserved_ip.0", "last_reserved_ip.1"],
        },
        Case {
            label: "malformed JSON",
            conf: conf.clone(),
            raw: Some(r#"{"cniVersion": "1.0.0", "name": "net-bad", "ipam": {"#),
            s: step("ADD", "x"),
            code: 6,
            reference_changes: &[],
        },
    ];
    for c in cases {
        let before_f = snapshot(p.f.path());
        let before_r = snapshot(p.r.path());
        let mut outs = Vec::new();
        for imp in [Impl::Reference, Impl::Ferry] {
            let mut cf = with_dir(&c.conf, p.dir(imp));
            merge(&mut cf, c.s.top.clone());
            let mut req = Req::new(c.s.command, c.s.cid, &cf)
                .ifname(c.s.ifname)
                .args(c.s.cni_args);
            if let Some(raw) = c.raw {
                req = req.raw(raw.as_bytes());
            }
            outs.push(run(&p.bins, imp, "host-local", &req));
        }
        let (r, f) = (&outs[0], &outs[1]);
        let want_r = if c.code == 6 && c.raw.is_some() {
            6
        } else {
            999
        };
        assert_eq!(r.err_code(), want_r, "{}: reference: {}", c.label, r.stdout);
        assert_eq!(f.err_code(), c.code, "{}: ferry: {}", c.label, f.stdout);
        assert!(!f.json()["msg"].as_str().unwrap_or("").is_empty());
        assert_eq!(
            snapshot(p.f.path()),
            before_f,
            "{}: Ferry changed its state",
            c.label
        );
        let after_r = snapshot(p.r.path());
        let changed: Vec<&String> = after_r
            .iter()
            .filter(|(k, v)| before_r.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .chain(before_r.keys().filter(|k| !after_r.contains_key(*k)))
            .collect();
        let expected: Vec<String> = c
            .reference_changes
            .iter()
            .map(|f| format!("{}/{f}", p.name))
            .collect();
        let changed: Vec<String> = changed.into_iter().cloned().collect();
        assert_eq!(changed, expected, "{}: what the reference changed", c.label);
        // Undo the reference's side effect so the next case starts equal.
        for (k, v) in &before_r {
            std::fs::write(p.r.path().join(k), v).ok();
        }
    }
    // A config that fails validation does not even create the network's
    // directory, in either implementation.
    let other = host_local(
        "1.0.0",
        "net-never",
        p.f.path(),
        json!({"ranges": [[{"subnet": "198.18.73.0/31"}]]}),
        json!({}),
    );
    for imp in [Impl::Reference, Impl::Ferry] {
        let c = with_dir(&other, p.dir(imp));
        assert!(!run(&p.bins, imp, "host-local", &Req::new("ADD", "x", &c)).success);
        assert!(!p.dir(imp).join("net-never").exists(), "{imp:?}");
    }
}

/// CNI_ARGS `IP` with several addresses: Ferry accepts, the reference
/// rejects (its `IP` is one address).
#[test]
fn comma_separated_ip_arg_is_a_ferry_extension() {
    let p = Pair::new("comma", "net-comma");
    let conf = host_local(
        "1.0.0",
        &p.name,
        p.f.path(),
        json!({"ranges": [[{"subnet": "198.18.76.0/24"}], [{"subnet": "fd00:64:a::/64"}]]}),
        json!({}),
    );
    let s = step("ADD", "a").args("IP=198.18.76.9,fd00:64:a::9");
    assert_eq!(p.run(Impl::Reference, &conf, &s).err_code(), 999);
    let v = p.run(Impl::Ferry, &conf, &s).ok();
    assert_eq!(v["ips"][0]["address"], "198.18.76.9/24");
    assert_eq!(v["ips"][1]["address"], "fd00:64:a::9/64");
}

/// State made by one implementation is used by the other: DEL, CHECK and
/// GC of the reference's leases by Ferry, and the other way round.
#[test]
fn cross_use_of_the_same_data_dir() {
    let bins = Bins::new();
    let dir = data_dir("cross");
    let net = dir.path().join("net-cross");
    let ipam = json!({"ranges": [[{"subnet": "198.18.77.0/24"}], [{"subnet": "fd00:64:b::/64"}]]});
    let conf = host_local("1.0.0", "net-cross", dir.path(), ipam.clone(), json!({}));
    let conf11 = host_local("1.1.0", "net-cross", dir.path(), ipam, json!({}));
    let add = |imp, cid: &str, ifname: &str| {
        run(
            &bins,
            imp,
            "host-local",
            &Req::new("ADD", cid, &conf).ifname(ifname),
        )
        .ok()
    };
    let del = |imp, cid: &str, ifname: &str| {
        let out = run(
            &bins,
            imp,
            "host-local",
            &Req::new("DEL", cid, &conf).ifname(ifname),
        );
        assert!(out.success, "{imp:?} DEL {cid}: {}", out.stdout);
    };
    let check = |imp, cid: &str, ifname: &str| {
        run(
            &bins,
            imp,
            "host-local",
            &Req::new("CHECK", cid, &conf).ifname(ifname),
        )
        .success
    };
    let held_by = |cid: &str, ifname: &str| -> Vec<String> {
        reservations(&net)
            .into_iter()
            .filter(|(_, v)| *v == holder(cid, ifname))
            .map(|(k, _)| k)
            .collect()
    };

    // The reference allocates; Ferry checks, releases and collects.
    for cid in ["r1", "r2", "r3", "r4"] {
        add(Impl::Reference, cid, "eth0");
    }
    assert_eq!(held_by("r1", "eth0"), ["198.18.77.2", "fd00:64:b::2"]);
    assert!(check(Impl::Ferry, "r1", "eth0"));
    assert!(!check(Impl::Ferry, "r1", "eth1"));
    del(Impl::Ferry, "r1", "eth0");
    assert!(held_by("r1", "eth0").is_empty());
    assert!(!check(Impl::Reference, "r1", "eth0"));
    let mut gc = conf11.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "r2", "ifname": "eth0"}]);
    let out = run(&bins, Impl::Ferry, "host-local", &Req::new("GC", "", &gc));
    assert!(out.success, "{}", out.stdout);
    assert_eq!(held_by("r2", "eth0").len(), 2);
    assert!(held_by("r3", "eth0").is_empty() && held_by("r4", "eth0").is_empty());
    assert!(check(Impl::Reference, "r2", "eth0"));

    // Ferry allocates after the reference's last address; the reference
    // checks and releases Ferry's leases and continues the round robin.
    let v = add(Impl::Ferry, "f1", "eth0");
    assert_eq!(v["ips"][0]["address"], "198.18.77.6/24");
    add(Impl::Ferry, "f2", "eth0");
    assert!(check(Impl::Reference, "f1", "eth0"));
    del(Impl::Reference, "f1", "eth0");
    assert!(held_by("f1", "eth0").is_empty());
    assert!(!check(Impl::Ferry, "f1", "eth0"));
    let v = add(Impl::Reference, "r5", "eth0");
    assert_eq!(v["ips"][0]["address"], "198.18.77.8/24");
    // Ferry's release finds the reference's lease without an index entry.
    del(Impl::Ferry, "r5", "eth0");
    del(Impl::Reference, "f2", "eth0");
    del(Impl::Ferry, "r2", "eth0");
    assert!(reservations(&net).is_empty(), "{:?}", reservations(&net));
    // The reference's DEL of Ferry's attachments does not know the index:
    // its entries may stay behind as stale hints, never as leases, and
    // Ferry's next GC removes them.
    let mut gc = conf11.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    assert!(run(&bins, Impl::Ferry, "host-local", &Req::new("GC", "", &gc)).success);
    let left: Vec<String> = snapshot(&net).into_keys().collect();
    assert_eq!(left, ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
}

/// GC removes the reservations of exactly the attachments not listed, old
/// single-line reservations included, and nothing else.
#[test]
fn gc_removes_exactly_the_stale_attachments() {
    let bins = Bins::new();
    let dir = data_dir("gc");
    let net = dir.path().join("net-gc");
    let ipam = json!({"ranges": [[{"subnet": "198.18.78.0/24"}], [{"subnet": "fd00:64:c::/64"}]]});
    let conf = host_local("1.1.0", "net-gc", dir.path(), ipam.clone(), json!({}));
    let conf10 = host_local("1.0.0", "net-gc", dir.path(), ipam, json!({}));
    let live = [("a", "eth0"), ("b", "eth0"), ("b", "net1")];
    let stale = [("c", "eth0"), ("b", "net2"), ("d", "eth0")];
    for (i, (cid, ifname)) in live.iter().chain(stale.iter()).enumerate() {
        // Half by the reference, half by Ferry.
        let imp = if i % 2 == 0 {
            Impl::Reference
        } else {
            Impl::Ferry
        };
        let c = if imp == Impl::Reference {
            &conf10
        } else {
            &conf
        };
        run(
            &bins,
            imp,
            "host-local",
            &Req::new("ADD", cid, c).ifname(ifname),
        )
        .ok();
    }
    // Old-format reservations hold the container ID alone.
    std::fs::write(net.join("198.18.78.200"), "old-live").unwrap();
    std::fs::write(net.join("198.18.78.201"), "old-stale\n").unwrap();
    // Files that are not reservations stay.
    std::fs::write(net.join("notes.txt"), "a\r\neth9").unwrap();
    std::fs::create_dir(net.join("sub")).unwrap();
    std::fs::write(net.join("sub/198.18.78.202"), holder("c", "eth0")).unwrap();

    let before = snapshot(&net);
    // Without the list, GC knows nothing and removes nothing.
    let out = run(&bins, Impl::Ferry, "host-local", &Req::new("GC", "", &conf));
    assert!(out.success, "{}", out.stdout);
    assert_eq!(snapshot(&net), before);
    // GC needs 1.1.0.
    let mut gc10 = conf10.clone();
    gc10["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(
        run(&bins, Impl::Ferry, "host-local", &Req::new("GC", "", &gc10)).err_code(),
        1
    );
    assert_eq!(snapshot(&net), before);

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": "a", "ifname": "eth0"},
        {"containerID": "b", "ifname": "eth0"},
        {"containerID": "b", "ifname": "net1"},
        {"containerID": "old-live", "ifname": "eth0"},
        {"containerID": "unknown", "ifname": "eth0"},
    ]);
    let out = run(&bins, Impl::Ferry, "host-local", &Req::new("GC", "", &gc));
    assert!(out.success, "{}", out.stdout);
    let after = snapshot(&net);
    let removed: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let mut expected: Vec<String> = before
        .iter()
        .filter(|(k, v)| {
            k.parse::<std::net::IpAddr>().is_ok()
                && (stale.iter().any(|(c, i)| **v == holder(c, i)) || v.trim() == "old-stale")
        })
        .map(|(k, _)| k.clone())
        .collect();
    // Ferry's index entries of the stale attachments it allocated go too.
    expected.extend(
        before
            .keys()
            .filter(|k| {
                k.starts_with("ferry-index/")
                    && stale
                        .iter()
                        .any(|(c, i)| **k == format!("ferry-index/{c}+{i}"))
            })
            .cloned(),
    );
    expected.sort();
    let mut removed: Vec<String> = removed.into_iter().cloned().collect();
    removed.sort();
    assert_eq!(removed, expected);
    assert_eq!(reservations(&net).len(), 2 * live.len() + 1);
    for (k, v) in &after {
        assert_eq!(before.get(k), Some(v), "{k} changed");
    }
    for (cid, ifname) in live {
        assert!(
            run(
                &bins,
                Impl::Reference,
                "host-local",
                &Req::new("CHECK", cid, &conf10).ifname(ifname)
            )
            .success
        );
    }
    // GC of a network that has no state yet creates none.
    let mut gc = host_local("1.1.0", "net-gc-none", dir.path(), json!({}), json!({}));
    gc["cni.dev/valid-attachments"] = Value::Null;
    assert!(run(&bins, Impl::Ferry, "host-local", &Req::new("GC", "", &gc)).success);
    assert!(!dir.path().join("net-gc-none").exists());
}

/// STATUS: code 50 as soon as one range set has no free address, counted
/// from the reservations (whoever made them).
#[test]
fn status_reports_exhausted_range_sets() {
    let bins = Bins::new();
    let dir = data_dir("status");
    let ipam = json!({"ranges": [
        [{"subnet": "198.18.79.0/24", "rangeStart": "198.18.79.10", "rangeEnd": "198.18.79.11"}],
        [{"subnet": "fd00:64:d::/64"}]
    ]});
    let conf = host_local("1.1.0", "net-status", dir.path(), ipam.clone(), json!({}));
    let conf10 = host_local("1.0.0", "net-status", dir.path(), ipam, json!({}));
    let status = || {
        run(
            &bins,
            Impl::Ferry,
            "host-local",
            &Req::new("STATUS", "", &conf),
        )
    };
    assert!(status().success);
    assert!(
        !dir.path().join("net-status").exists(),
        "STATUS created state"
    );
    run(
        &bins,
        Impl::Ferry,
        "host-local",
        &Req::new("ADD", "a", &conf),
    )
    .ok();
    assert!(status().success);
    run(
        &bins,
        Impl::Reference,
        "host-local",
        &Req::new("ADD", "b", &conf10),
    )
    .ok();
    let out = status();
    assert_eq!(out.err_code(), 50, "{}", out.stdout);
    assert!(
        !run(
            &bins,
            Impl::Ferry,
            "host-local",
            &Req::new("ADD", "c", &conf)
        )
        .success
    );
    assert!(
        run(
            &bins,
            Impl::Ferry,
            "host-local",
            &Req::new("DEL", "b", &conf)
        )
        .success
    );
    assert!(status().success);
    // STATUS needs 1.1.0; a broken config is code 7.
    assert_eq!(
        run(
            &bins,
            Impl::Ferry,
            "host-local",
            &Req::new("STATUS", "", &conf10)
        )
        .err_code(),
        1
    );
    let bad = host_local("1.1.0", "net-status", dir.path(), json!({}), json!({}));
    assert_eq!(
        run(
            &bins,
            Impl::Ferry,
            "host-local",
            &Req::new("STATUS", "", &bad)
        )
        .err_code(),
        7
    );
}

/// CHECK with a prevResult: every address of it inside our ranges must be
/// reserved for the attachment (the reference only looks for any lease).
#[test]
fn check_compares_prev_result_with_the_leases() {
    let bins = Bins::new();
    let dir = data_dir("check");
    let conf = host_local(
        "1.0.0",
        "net-check",
        dir.path(),
        json!({"ranges": [[{"subnet": "198.18.80.0/24"}]]}),
        json!({}),
    );
    let v = run(
        &bins,
        Impl::Ferry,
        "host-local",
        &Req::new("ADD", "a", &conf),
    )
    .ok();
    run(
        &bins,
        Impl::Ferry,
        "host-local",
        &Req::new("ADD", "b", &conf),
    )
    .ok();
    let mut c = conf.clone();
    c["prevResult"] = v.clone();
    for imp in [Impl::Reference, Impl::Ferry] {
        assert!(run(&bins, imp, "host-local", &Req::new("CHECK", "a", &c)).success);
    }
    c["prevResult"]["ips"][0]["address"] = json!("198.18.80.3/24");
    assert_eq!(
        run(
            &bins,
            Impl::Ferry,
            "host-local",
            &Req::new("CHECK", "a", &c)
        )
        .err_code(),
        100
    );
    // Addresses outside our ranges belong to someone else.
    c["prevResult"]["ips"][0]["address"] = json!("198.19.0.3/24");
    assert!(
        run(
            &bins,
            Impl::Ferry,
            "host-local",
            &Req::new("CHECK", "a", &c)
        )
        .success
    );
}
