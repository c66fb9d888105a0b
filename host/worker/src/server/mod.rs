//! The HTTP API (axum): `/execute` with its SSE stream, `/cancel`, `/health`, `/metrics`,
//! `/shutdown`, and the OpenAI-compatible `/v1/*` routes.

mod app;
mod auth;
pub mod chat_template;
mod compute_budget;
pub mod connections;
mod control;
mod error;
mod execute;
pub mod harmony;
mod health;
mod job_id;
mod metrics;
mod min_rate_body;
mod openai;
mod openai_fields;
mod openai_logprobs;
mod openai_response;
mod openai_tools;
mod plugins;
mod response_format;
mod sse;
mod state;
mod submit;
mod template_json;
mod tokenize;
mod tool_formats;

pub use app::{OPENAPI_YAML, app};
pub use auth::ApiKey;
pub use compute_budget::{ComputeBudget, ComputeCost};
pub use connections::ConnectionLimits;
pub use error::AppError;
pub use health::Health;
pub use job_id::{MAX_JOB_ID_BYTES, validate_job_id};
pub use min_rate_body::BodyRate;
pub use plugins::PluginList;
pub use state::{AppState, HealthCache, ModelFacts, ServerLimits, VramReport};
