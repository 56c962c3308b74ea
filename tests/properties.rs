//! Property tests: arbitrary JSON and arbitrary bytes never panic the frame decoders or the
//! config loader, and decoded frames survive an encode/decode round trip.
#![allow(clippy::unwrap_used)] // a test that unwraps fails with the reason

mod common;

use proptest::prelude::*;
use serde_json::{Map, Value};

use common::{FRAME_WORDS, exercise_config, exercise_frame, fixture_dir};

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FRAME_WORDS.clone()).prop_map(str::to_owned),
        1 => "[a-z0-9 =:./-]{0,10}",
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..700).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Objects shaped like frames: some known keys with arbitrary values.
fn json_frame() -> impl Strategy<Value = Value> {
    prop::collection::vec((word(), json_value()), 0..8)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>()))
}

/// YAML made of config keys in random nesting, with random scalars.
fn yaml_like() -> impl Strategy<Value = String> {
    let key = prop::sample::select(
        &[
            "pbx",
            "url",
            "domain",
            "dialect",
            "tls",
            "ca_file",
            "insecure",
            "admin",
            "user",
            "password",
            "defaults",
            "prompts",
            "recordings",
            "record",
            "http",
            "listen",
            "bots",
            "name",
            "extension",
            "script",
            "max_calls",
            "allow_dial",
            "vars",
            "- name",
            "-",
        ][..],
    );
    let scalar = prop::sample::select(
        &[
            "https://x",
            "bot.rhai",
            "prompts",
            "\"500\"",
            "5??",
            "${SET}",
            "${UNSET}",
            "[",
            "{",
            "}",
            "true",
            "stereo",
            "0",
            "-1",
            "{ a: 1 }",
            "[\"5??\"]",
            "~",
            "&a",
            "*a",
            "!!str",
            "|",
        ][..],
    );
    prop::collection::vec((0usize..4, key, scalar), 0..16).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(indent, key, value)| format!("{}{key}: {value}\n", "  ".repeat(indent)))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn frame_decoders_never_panic_on_json(value in json_value()) {
        let _ = exercise_frame(&value.to_string());
    }

    #[test]
    fn frame_decoders_never_panic_on_frame_shaped_json(value in json_frame()) {
        let _ = exercise_frame(&value.to_string());
    }

    #[test]
    fn frame_decoders_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = exercise_frame(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn config_loader_never_panics_on_text(text in ".{0,200}") {
        let _ = exercise_config(&text, fixture_dir());
    }

    #[test]
    fn config_loader_never_panics_on_json(value in json_value()) {
        let _ = exercise_config(&value.to_string(), fixture_dir());
    }

    #[test]
    fn config_loader_never_panics_on_config_shaped_yaml(text in yaml_like()) {
        let _ = exercise_config(&text, fixture_dir());
    }
}

mod emulator_under_random_frames {
    //! Random frames thrown at one socket of the emulator never stop it serving the others.

    use std::sync::OnceLock;

    use callbot::pbx::{MediaMode, Pbx};
    use callbot::protocol::{ConnectionState, Dialect};
    use futures_util::SinkExt;
    use proptest::prelude::*;
    use tokio_tungstenite::tungstenite::Message;

    use super::common::emulator::{TestClient, raw_socket, start_pbx};
    use super::json_frame;

    fn runtime() -> &'static tokio::runtime::Runtime {
        static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        })
    }

    fn pbx() -> &'static Pbx {
        static PBX: OnceLock<Pbx> = OnceLock::new();
        PBX.get_or_init(|| runtime().block_on(start_pbx(MediaMode::Relay, Dialect::Legacy)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn other_sockets_keep_being_served(frames in prop::collection::vec(json_frame(), 1..40)) {
            let pbx = pbx();
            runtime().block_on(async {
                let mut attacker = raw_socket(pbx, "509").await;
                for frame in &frames {
                    let _ = attacker.send(Message::text(frame.to_string())).await;
                }
                let mut bystander = TestClient::connect(super::common::emulator::settings(
                    pbx,
                    "508",
                    super::common::emulator::third_party(super::common::emulator::ADMIN_PASSWORD),
                ));
                bystander.state(ConnectionState::AccessGranted).await;
                bystander.link.close().await;
            });
        }
    }
}
