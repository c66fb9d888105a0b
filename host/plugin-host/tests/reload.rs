//! The plugin folder: loading at start, hot reload of a new version without touching sessions
//! in flight, and the on-disk compile cache.

mod common;

use common::{VOCAB, config, facts, guest, params, scratch_dir};
use orcd_common::Vocab;
use orcd_device::mock::MockDevice;
use orcd_device::{Device, LogitsWanted, SeqInput};
use orcd_plugin_host::{PluginHost, PluginHostConfig, PluginSource};

fn device() -> MockDevice {
    let mut dev = MockDevice::new(VOCAB as usize, 11).unwrap();
    let slot = dev.alloc_seq(4).unwrap();
    dev.forward(&[SeqInput {
        slot,
        start_pos: 0,
        tokens: &[2],
        logits: LogitsWanted::Last,
    }])
    .unwrap();
    dev
}

#[test]
fn new_version_replaces_old_for_new_sessions_only() {
    let dir = scratch_dir("reload");
    std::fs::copy(guest("hostile_sampler"), dir.join("hostile.wasm")).unwrap();
    let cfg = PluginHostConfig {
        plugin_dir: Some(dir.clone()),
        ..config()
    };
    let host = PluginHost::new(cfg, facts(VOCAB), &Vocab::synthetic(VOCAB)).unwrap();
    let listed = host.plugins();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, "0.1.0");
    assert_eq!(
        listed[0].source,
        PluginSource::File(dir.join("hostile.wasm"))
    );
    assert!(host.rescan().is_empty(), "nothing changed");

    let mut old = host.sampler("hostile", &params(0), 1).unwrap();
    std::fs::copy(guest("hostile_sampler_next"), dir.join("hostile-next.wasm")).unwrap();
    let results = host.rescan();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].as_ref().unwrap().version, "0.2.0");
    let listed = host.plugins();
    assert_eq!(listed.len(), 1, "one plugin per kind and name");
    assert_eq!(listed[0].version, "0.2.0");

    // The session in flight keeps its version and keeps working.
    let mut dev = device();
    let want = dev.logits_argmax(0).unwrap().0;
    assert_eq!(old.plugin().version, "0.1.0");
    assert_eq!(old.sample(&mut dev, 0, &[]).unwrap(), want);
    let mut new = host.sampler("hostile", &params(0), 1).unwrap();
    assert_eq!(new.plugin().version, "0.2.0");
    assert_eq!(new.sample(&mut dev, 0, &[]).unwrap(), want);

    // A broken file in the folder is reported and changes nothing.
    std::fs::write(dir.join("broken.wasm"), b"not wasm").unwrap();
    let results = host.rescan();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].as_ref().unwrap_err().code(),
        "PLUGIN_LOAD_FAILED"
    );
    assert_eq!(host.plugins()[0].version, "0.2.0");
}

#[test]
fn watcher_picks_up_new_files() {
    let dir = scratch_dir("watch");
    let cfg = PluginHostConfig {
        plugin_dir: Some(dir.clone()),
        ..config()
    };
    let host = PluginHost::new(cfg, facts(VOCAB), &Vocab::synthetic(VOCAB)).unwrap();
    assert!(host.plugins().is_empty());
    host.watch(std::time::Duration::from_millis(20)).unwrap();
    std::fs::copy(guest("hostile_sampler"), dir.join("hostile.wasm")).unwrap();
    // Wait (bounded) for the watcher's scan; no timing is asserted, only the outcome.
    let mut seen = false;
    for _ in 0..500 {
        if host.plugins().iter().any(|p| p.name == "hostile") {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen, "the watcher did not load the new plugin");
}

#[test]
fn compile_cache_is_written_checked_and_reused() {
    let cache = scratch_dir("cache");
    let cfg = PluginHostConfig {
        cache_dir: Some(cache.clone()),
        ..config()
    };
    let host = PluginHost::new(cfg.clone(), facts(VOCAB), &Vocab::synthetic(VOCAB)).unwrap();
    host.load_file(&guest("hostile_sampler")).unwrap();
    let files = |ext: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect()
    };
    let code = files("cwasm");
    assert_eq!(code.len(), 1);
    assert_eq!(files("sha256").len(), 1);
    let original = std::fs::read(&code[0]).unwrap();

    // A second host loads from the cache; a tampered file is recompiled, not trusted.
    let mut tampered = original.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    std::fs::write(&code[0], &tampered).unwrap();
    let host2 = PluginHost::new(cfg, facts(VOCAB), &Vocab::synthetic(VOCAB)).unwrap();
    host2.load_file(&guest("hostile_sampler")).unwrap();
    assert_eq!(std::fs::read(&code[0]).unwrap(), original);
    let mut dev = device();
    let mut s = host2.sampler("hostile", &params(0), 3).unwrap();
    assert_eq!(
        s.sample(&mut dev, 0, &[]).unwrap(),
        dev.logits_argmax(0).unwrap().0
    );
}
