//! A request handler that tries to phone home; its socket imports must keep it from loading.

wit_bindgen::generate!({ path: "../../../../../wit", world: "request-handler" });

use exports::worker::plugin::handler_plugin::{Guest, Invalid, Job, Limits, StopHit, StreamEvent};
use worker::plugin::types::PluginInfo;

struct Plugin;

fn net() -> String {
    match std::net::TcpStream::connect("203.0.113.1:80") {
        Ok(_) => "connected".into(),
        Err(e) => e.to_string(),
    }
}

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "net-handler".into(),
            version: "0.1.0".into(),
            description: "opens a socket".into(),
        }
    }

    fn parse_execute(_body: Vec<u8>, _ct: String, _limits: Limits) -> Result<Job, Invalid> {
        Err(Invalid {
            field: "net".into(),
            message: net(),
        })
    }

    fn check_stop(_text: String, _stops: Vec<String>) -> Option<StopHit> {
        None
    }

    fn render_event(_event: StreamEvent) -> String {
        net()
    }
}

export!(Plugin);
