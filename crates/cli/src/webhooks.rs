//! `syncway webhooks`: subscriptions, messages and recovery, one API call
//! each (CONTRACT.md §10).

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Api, CallError};
use crate::output::{Format, print};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Subscribe an endpoint to events.
    Create {
        /// The endpoint's URL.
        #[arg(value_name = "URL")]
        endpoint: String,
        /// Comma-separated event types (sync.completed,sync.failed, ...).
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// A signing secret of your own (`whsec_...`); one is made when
        /// absent (see it with `get --secret`).
        #[arg(long)]
        secret: Option<String>,
    },
    /// The organization's subscriptions.
    List,
    /// One subscription with its recent attempts.
    Get {
        subscription: String,
        /// Show the signing secret.
        #[arg(long)]
        secret: bool,
    },
    /// Delete a subscription.
    Delete { subscription: String },
    /// The newest messages, or one with its attempts.
    Messages {
        message: Option<String>,
        /// Only these event types (comma-separated).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
    /// Send again what failed to a subscription since a time (RFC 3339).
    Recover {
        subscription: String,
        #[arg(long)]
        since: String,
        #[arg(long)]
        until: Option<String>,
    },
}

const SUBSCRIPTION_COLUMNS: &[&str] = &["id", "url", "filter_types", "disabled", "health_status"];
const MESSAGE_COLUMNS: &[&str] = &["id", "event_type", "timestamp"];
const ATTEMPT_COLUMNS: &[&str] = &["timestamp", "status", "response_status_code", "url"];

fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub async fn webhooks(api: &Api, format: Format, command: WebhookCommand) -> Result<(), CallError> {
    match command {
        WebhookCommand::Create {
            endpoint,
            events,
            secret,
        } => {
            let mut body = json!({"url": endpoint, "event_types": events});
            if let Some(secret) = secret {
                body["secret"] = Value::String(secret);
            }
            let answer = api
                .call(Method::POST, "/webhooks/subscriptions", Some(&body))
                .await?;
            print(format, &answer, SUBSCRIPTION_COLUMNS);
        }
        WebhookCommand::List => {
            let answer = api
                .call(Method::GET, "/webhooks/subscriptions", None)
                .await?;
            print(format, &answer, SUBSCRIPTION_COLUMNS);
        }
        WebhookCommand::Get {
            subscription,
            secret,
        } => {
            let path = format!(
                "/webhooks/subscriptions/{}?include_secret={secret}",
                segment(&subscription)
            );
            let answer = api.call(Method::GET, &path, None).await?;
            let mut columns = SUBSCRIPTION_COLUMNS.to_vec();
            if secret {
                columns.push("secret");
            }
            print(format, &answer, &columns);
            if format == Format::Human {
                attempts(&answer);
            }
        }
        WebhookCommand::Delete { subscription } => {
            let path = format!("/webhooks/subscriptions/{}", segment(&subscription));
            let answer = api.call(Method::DELETE, &path, None).await?;
            print(format, &answer, SUBSCRIPTION_COLUMNS);
        }
        WebhookCommand::Messages { message, events } => match message {
            Some(message) => {
                let path = format!(
                    "/webhooks/messages/{}?include_attempts=true",
                    segment(&message)
                );
                let answer = api.call(Method::GET, &path, None).await?;
                print(format, &answer, MESSAGE_COLUMNS);
                if format == Format::Human {
                    attempts(&answer);
                }
            }
            None => {
                let query: Vec<String> = events
                    .iter()
                    .map(|event| format!("event_types={}", segment(event)))
                    .collect();
                let path = format!("/webhooks/messages?{}", query.join("&"));
                let answer = api.call(Method::GET, &path, None).await?;
                print(format, &answer, MESSAGE_COLUMNS);
            }
        },
        WebhookCommand::Recover {
            subscription,
            since,
            until,
        } => {
            let mut body = json!({"since": since});
            if let Some(until) = until {
                body["until"] = Value::String(until);
            }
            let path = format!("/webhooks/subscriptions/{}/recover", segment(&subscription));
            let answer = api.call(Method::POST, &path, Some(&body)).await?;
            print(format, &answer, &["id", "status", "recovered"]);
        }
    }
    Ok(())
}

/// The attempts of an answer, as a table under it.
fn attempts(answer: &str) {
    let Ok(body) = serde_json::from_str::<Value>(answer) else {
        return;
    };
    if let Some(attempts) = body.get("delivery_attempts") {
        println!("\ndelivery attempts:");
        print(Format::Human, &attempts.to_string(), ATTEMPT_COLUMNS);
    }
}
