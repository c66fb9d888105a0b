//! The plugin folder as the truth about the directory: a removed file unloads its plugin once
//! its sessions end, a replaced file swaps versions (sessions in flight keep theirs), a file
//! that fails to load is reported with its error and unloads what it held; every change is
//! counted. And the two contract versions side by side: a 0.1.0 sampler (no `validate`) and a
//! 0.2.0 one (with it) load and serve from the same host.

mod common;

use common::{VOCAB, config, facts, guest, params, scratch_dir};
use orcd_common::Vocab;
use orcd_device::mock::MockDevice;
use orcd_device::{Device, LogitsWanted, SeqInput};
use orcd_plugin_host::{DirectoryChanges, PluginError, PluginHost, PluginHostConfig};

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

fn host_over(dir: &std::path::Path) -> PluginHost {
    let cfg = PluginHostConfig {
        plugin_dir: Some(dir.to_path_buf()),
        ..config()
    };
    PluginHost::new(cfg, facts(VOCAB), &Vocab::synthetic(VOCAB)).unwrap()
}

#[test]
fn a_removed_file_unloads_its_plugin_once_no_session_uses_it() {
    let dir = scratch_dir("remove");
    std::fs::copy(guest("hostile_sampler"), dir.join("hostile.wasm")).unwrap();
    let host = host_over(&dir);
    assert_eq!(host.plugins().len(), 1);
    let mut in_flight = host.sampler("hostile", &params(0), 1).unwrap();

    std::fs::remove_file(dir.join("hostile.wasm")).unwrap();
    assert!(host.rescan().is_empty(), "nothing was loaded");
    assert!(
        host.plugins().is_empty(),
        "the directory follows the folder"
    );
    match host.sampler("hostile", &params(0), 1) {
        Err(e @ PluginError::NotFound { .. }) => assert_eq!(e.code(), "PLUGIN_NOT_FOUND"),
        other => panic!("expected PLUGIN_NOT_FOUND, got {other:?}"),
    }
    let c = host.directory_changes();
    assert_eq!((c.loaded, c.unloaded, c.released), (1, 1, 0), "{c:?}");

    // The request in flight keeps its plugin, which goes when the request ends.
    let mut dev = device();
    let want = dev.logits_argmax(0).unwrap().0;
    assert_eq!(in_flight.sample(&mut dev, 0, &[]).unwrap(), want);
    drop(in_flight);
    assert_eq!(host.directory_changes().released, 1);

    // Back in the folder, back in service.
    std::fs::copy(guest("hostile_sampler"), dir.join("hostile.wasm")).unwrap();
    assert_eq!(host.rescan().len(), 1);
    assert_eq!(host.plugins().len(), 1);
}

#[test]
fn a_replaced_file_swaps_versions_for_new_sessions() {
    let dir = scratch_dir("replace");
    let path = dir.join("hostile.wasm");
    std::fs::copy(guest("hostile_sampler"), &path).unwrap();
    let host = host_over(&dir);
    let mut old = host.sampler("hostile", &params(0), 1).unwrap();

    std::fs::copy(guest("hostile_sampler_next"), &path).unwrap();
    let results = host.rescan();
    assert_eq!(results.len(), 1, "the changed file is loaded again");
    assert_eq!(results[0].as_ref().unwrap().version, "0.2.0");
    let listed = host.plugins();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].version.as_str(), listed[0].contract.as_str()),
        ("0.2.0", "0.2.0")
    );
    let c = host.directory_changes();
    assert_eq!((c.loaded, c.replaced, c.unloaded), (1, 1, 0), "{c:?}");

    let mut dev = device();
    let want = dev.logits_argmax(0).unwrap().0;
    assert_eq!(old.plugin().version, "0.1.0");
    assert_eq!(old.sample(&mut dev, 0, &[]).unwrap(), want);
    let mut new = host.sampler("hostile", &params(0), 1).unwrap();
    assert_eq!(new.plugin().version, "0.2.0");
    assert_eq!(new.sample(&mut dev, 0, &[]).unwrap(), want);
    drop(old);
    assert_eq!(host.directory_changes().released, 1);
}

#[test]
fn a_file_that_fails_to_load_is_reported_and_unloads_what_it_held() {
    let dir = scratch_dir("failing");
    let path = dir.join("hostile.wasm");
    std::fs::copy(guest("hostile_sampler"), &path).unwrap();
    std::fs::write(dir.join("junk.wasm"), b"not wasm").unwrap();
    let host = host_over(&dir);
    let failures = host.load_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].path, dir.join("junk.wasm"));
    assert_eq!(failures[0].code, "PLUGIN_LOAD_FAILED");
    assert!(failures[0].message.contains("junk.wasm"), "{failures:?}");

    // The sampler's file broken in place: the old plugin leaves service, the failure shows.
    std::fs::write(&path, b"also not wasm, and longer").unwrap();
    host.rescan();
    assert!(host.plugins().is_empty());
    assert_eq!(host.load_failures().len(), 2);
    // Fixed, and the junk removed: all clear.
    std::fs::copy(guest("hostile_sampler"), &path).unwrap();
    std::fs::remove_file(dir.join("junk.wasm")).unwrap();
    host.rescan();
    assert_eq!(host.plugins().len(), 1);
    assert!(host.load_failures().is_empty());
    assert_eq!(
        host.directory_changes(),
        DirectoryChanges {
            loaded: 2,
            replaced: 0,
            unloaded: 1,
            released: 1,
            failed: 2,
        }
    );
}

#[test]
fn contract_0_1_and_0_2_plugins_load_and_serve_side_by_side() {
    let host = PluginHost::new(config(), facts(VOCAB), &Vocab::synthetic(VOCAB)).unwrap();
    let old = host.load_file(&guest("hostile_sampler")).unwrap();
    assert_eq!(old.contract, "0.1.0");
    // A 0.1.0 sampler has no `validate`: admission accepts, `open` refuses as before.
    host.validate_sampler("hostile", &params(99)).unwrap();
    match host.sampler("hostile", &params(99), 1) {
        Err(e) => assert_eq!(e.code(), "PLUGIN_ERROR", "{e}"),
        Ok(_) => panic!("mode 99 opened"),
    }
    let mut dev = device();
    let want = dev.logits_argmax(0).unwrap().0;
    let mut s01 = host.sampler("hostile", &params(0), 1).unwrap();

    let new = host.load_file(&guest("hostile_sampler_next")).unwrap();
    assert_eq!(new.contract, "0.2.0");
    // A 0.2.0 sampler's `validate` refuses at admission, naming the field.
    match host.validate_sampler("hostile", &params(99)) {
        Err(PluginError::InvalidRequest { field, message }) => {
            assert_eq!(field, "sampler_params.mode");
            assert!(message.contains("99"), "{message}");
        }
        other => panic!("expected a refusal naming sampler_params.mode, got {other:?}"),
    }
    host.validate_sampler("hostile", &params(0)).unwrap();
    let mut s02 = host.sampler("hostile", &params(0), 1).unwrap();
    assert_eq!(s01.sample(&mut dev, 0, &[]).unwrap(), want);
    assert_eq!(s02.sample(&mut dev, 0, &[]).unwrap(), want);
    match host.validate_sampler("nosuch", &params(0)) {
        Err(e) => assert_eq!(e.code(), "PLUGIN_NOT_FOUND"),
        Ok(()) => panic!("an unknown sampler validated"),
    }
}
