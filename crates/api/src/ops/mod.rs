//! What operators watch: the deployment's figures ([`figures`]), gathered
//! into a snapshot shared by every API process ([`snapshot`]), with the
//! broker's unacked counts from its management API ([`management`]).

pub mod figures;
pub mod management;
pub mod snapshot;
