//! The HTTP API (axum): `/execute` with its SSE stream, `/cancel`, `/health`, `/metrics`,
//! `/shutdown`, and the OpenAI-compatible `/v1/*` routes.

mod app;
mod auth;
pub mod chat_template;
mod control;
mod error;
mod execute;
mod health;
mod metrics;
mod openai;
mod openai_fields;
mod plugins;
mod sse;
mod state;
mod submit;

pub use app::{OPENAPI_YAML, app};
pub use auth::ApiKey;
pub use error::AppError;
pub use health::Health;
pub use plugins::PluginList;
pub use state::{AppState, HealthCache, ModelFacts, ServerLimits, VramReport};
