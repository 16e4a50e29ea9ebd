//! Every file in specs/ loads cleanly and is exercised by some test, so
//! the examples cannot rot. (recordings/ has the same kind of registry,
//! `RECORDED` in tests/it/recordings.rs.)

use crate::support;

/// Each shipped spec and the tests that run it.
const EXERCISED: &[(&str, &str)] = &[
    (
        "original-server.json",
        "server::original_example_runs_verbatim_and_cycles_per_connection",
    ),
    (
        "original-client.json",
        "client::original_client_example_runs_verbatim_against_original_server_example",
    ),
    (
        "mock-hello.json",
        "peer::the_mock_answers_like_the_real_server",
    ),
    (
        "client-event-cycle.json",
        "peer::full_event_cycle_against_the_python_server",
    ),
    (
        "pb-mock-go-peer.json",
        "pb_roles::full_event_cycle_between_client_and_server_roles",
    ),
    (
        "pb-client-event-cycle.json",
        "pb_roles::full_event_cycle_between_client_and_server_roles",
    ),
    (
        "pb-mock-faults.json",
        "pb_inject::each_fault_is_reported_by_the_client_and_recorded_by_the_proxy",
    ),
    (
        "pb-kong-go-peer.json",
        "pb_kong::requests_run_through_the_pb_mock_with_kongs_lifecycle_and_answers",
    ),
    (
        "export-go-pdk-event-cycle-server.json",
        "pb_export::committed_go_pdk_exports_are_up_to_date_and_replay",
    ),
    (
        "export-go-pdk-event-cycle-client.json",
        "pb_export::committed_go_pdk_exports_are_up_to_date_and_replay",
    ),
    (
        "kong-hello.json",
        "kong::one_line_spec_runs_a_request_through_the_python_plugin",
    ),
    (
        "kong-requests.json",
        "kong::instances_are_reused_then_replaced_on_a_config_change",
    ),
    (
        "mock-faults.json",
        "faults::the_shipped_chaos_mock_faults_the_same_calls_every_run",
    ),
    (
        "goplugin-client-kv.json",
        "goplugin::host::the_host_drives_the_python_plugin_through_every_call",
    ),
    (
        "goplugin-client-mock.json",
        "goplugin::host::the_host_drives_the_mock_plugin",
    ),
    (
        "goplugin-mock-kv.json",
        "goplugin::host::the_host_drives_the_mock_plugin",
    ),
    (
        "prox-mock-plugin.json",
        "prox_roles::mock_plugin_answers_prox_bytes_and_bad_envelopes",
    ),
    (
        "prox-client-mock.json",
        "prox_roles::client_drives_the_mock_plugin",
    ),
    (
        "prox-client.json",
        "prox_roles::client_drives_the_python_plugin",
    ),
    (
        "client-interleaved.json",
        "export_roundtrip::round_trip_c_interleaved_connections_keep_each_events_step_replies",
    ),
    (
        "export-python-event-cycle-server.json",
        "export_roundtrip::committed_exports_match_fresh_exports_of_the_recordings",
    ),
    (
        "export-python-event-cycle-client.json",
        "export_roundtrip::committed_exports_replay",
    ),
    (
        "export-python-interleaved-server.json",
        "export_roundtrip::committed_exports_replay",
    ),
    (
        "export-python-interleaved-client.json",
        "export_roundtrip::committed_exports_replay",
    ),
    (
        "export-prox-python-server.json",
        "export_prox::a_recording_exported_as_a_mock_answers_as_the_plugin_did",
    ),
    (
        "export-prox-python-client.json",
        "export_prox::an_exported_client_spec_passes_against_a_fresh_plugin",
    ),
    (
        "export-goplugin-python-kv-server.json",
        "goplugin::export::committed_exports_match_a_fresh_export_and_replay",
    ),
    (
        "export-goplugin-python-kv-client.json",
        "goplugin::export::committed_exports_match_a_fresh_export_and_replay",
    ),
];

#[test]
fn every_spec_loads_without_warnings_and_is_exercised() {
    let mut names: Vec<String> = std::fs::read_dir(support::root().join("specs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    for name in &names {
        let text = std::fs::read_to_string(support::spec(name)).unwrap();
        if plugtap::goplugin::spec::is_go_plugin(&text) {
            let spec = plugtap::goplugin::spec::load_file(&support::spec(name))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(spec.warnings.is_empty(), "{name}: {:?}", spec.warnings);
            assert!(spec.role.is_some(), "{name} names its role");
        } else {
            let spec =
                plugtap::spec::load_file(&support::spec(name)).unwrap_or_else(|e| panic!("{e}"));
            assert!(spec.warnings.is_empty(), "{name}: {:?}", spec.warnings);
            assert!(spec.role.is_some(), "{name} names its role");
        }
        assert!(
            EXERCISED.iter().any(|(n, _)| n == name),
            "specs/{name} is not exercised by any test; add one and list it in EXERCISED"
        );
    }
    for (name, _) in EXERCISED {
        assert!(
            names.iter().any(|n| n == name),
            "EXERCISED lists missing specs/{name}"
        );
    }
}
