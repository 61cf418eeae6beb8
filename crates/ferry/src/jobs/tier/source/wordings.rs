//! The camera's learned wordings between passes: JSON under `ferry:{tier/<camera>}:wordings`
//! (the hash slot of the camera's lease), read with GET and written with SET.

use ferry_connectors::redis::ConnError;
use ferry_core::jobs::tier::wordings::CameraWordings;
use redis::Value;

use super::{CaptionSource, command_error};

impl CaptionSource {
    /// The camera's learned wordings as the last pass left them; `None` when there are none
    /// (or they cannot be read: they are learned again).
    pub async fn load_wordings(&self, camera: &str) -> Result<Option<CameraWordings>, ConnError> {
        let key = wordings_key(camera);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&key);
        let reply = self.redis.query(key.as_bytes(), cmd).await?;
        Ok(match reply {
            Ok(Value::BulkString(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(wordings) => Some(wordings),
                Err(e) => {
                    tracing::warn!(camera, key, error = %e, "the learned wordings are not Ferry's JSON; learning again");
                    None
                }
            },
            Ok(_) => None,
            Err(e) => {
                // Not a string (another program's key): learned again, and overwritten.
                tracing::warn!(camera, key, error = %e, "the learned wordings cannot be read; learning again");
                None
            }
        })
    }

    /// Keeps the camera's learned wordings for the next pass.
    pub async fn save_wordings(
        &self,
        camera: &str,
        wordings: &CameraWordings,
    ) -> Result<(), ConnError> {
        let key = wordings_key(camera);
        let json = serde_json::to_vec(wordings).expect("wordings serialise");
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(json);
        let reply = self.redis.query(key.as_bytes(), cmd).await?;
        reply.map_err(|e| command_error(&self.redis, e))?;
        Ok(())
    }
}

/// The key keeping a camera's learned wordings (same hash slot as its lease).
fn wordings_key(camera: &str) -> String {
    format!("ferry:{{tier/{camera}}}:wordings")
}
