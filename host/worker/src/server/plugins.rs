//! `GET /plugins`: the plugins the worker has in service (kind, name, version, contract
//! version, source) and the plugin files that fail to load. `worker-orcd plugin list` prints it.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::state::AppState;
use crate::plugins::{PluginLoadFailure, PluginRow};

/// The `GET /plugins` body.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct PluginList {
    pub plugins: Vec<PluginRow>,
    pub load_failures: Vec<PluginLoadFailure>,
}

pub async fn plugins(State(state): State<AppState>) -> Json<PluginList> {
    let catalog = &state.plugins.catalog;
    Json(PluginList {
        plugins: catalog.loaded(),
        load_failures: catalog.load_failures(),
    })
}
