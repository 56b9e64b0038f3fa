//! Re-reading a changed row whose update left a TOASTed value out (and
//! whose old row does not have it). The stream's own session is busy
//! streaming changes, so a second session does it, opened at first need.

use syncway_egress::Policy;
use tokio_postgres::Client;

use super::pgoutput::Datum;
use super::rows::Shape;
use super::setup;
use crate::postgres::{classify, connect};
use crate::{Limits, SourceError};

/// A second session to the source, opened when a row must be re-read.
pub struct Rereader<'a> {
    target: connect::Target,
    policy: &'a Policy,
    limits: &'a Limits,
    session: Option<(Client, tokio::task::JoinHandle<()>)>,
}

impl<'a> Rereader<'a> {
    pub fn new(target: connect::Target, policy: &'a Policy, limits: &'a Limits) -> Self {
        Rereader {
            target,
            policy,
            limits,
            session: None,
        }
    }

    /// The row's current values, read by its key; `None` when it is gone
    /// (a later delete in the stream says so).
    pub async fn row(
        &mut self,
        shape: &Shape,
        values: &[Datum],
    ) -> Result<Option<Vec<Datum>>, SourceError> {
        let mut conditions = Vec::new();
        let mut keys = Vec::new();
        for ((name, _, key), value) in shape.columns.iter().zip(values) {
            if let (true, Datum::Text(text)) = (key, value) {
                keys.push(text.clone());
                conditions.push(format!("{}::text = ${}", setup::quote(name), keys.len()));
            }
        }
        let columns: Vec<String> = shape
            .columns
            .iter()
            .map(|(name, _, _)| format!("{}::text", setup::quote(name)))
            .collect();
        let sql = format!(
            "SELECT {} FROM {}.{} WHERE {}",
            columns.join(", "),
            setup::quote(&shape.schema),
            setup::quote(&shape.name),
            conditions.join(" AND ")
        );
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            keys.iter().map(|key| key as _).collect();
        let client = self.client().await?;
        let row = client
            .query_opt(&sql, &params)
            .await
            .map_err(|error| classify(error, "reading a changed row"))?;
        Ok(row.map(|row| super::rows::datums(&row, shape.columns.len())))
    }

    async fn client(&mut self) -> Result<&Client, SourceError> {
        let session = match self.session.take() {
            Some(session) => session,
            None => {
                let (client, connection) =
                    connect::connect(self.target.clone(), self.policy, self.limits).await?;
                setup::prepare_session(&client).await?;
                (client, connection)
            }
        };
        Ok(&self.session.insert(session).0)
    }
}
