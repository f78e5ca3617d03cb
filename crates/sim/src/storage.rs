//! A fake of the Cloud Storage JSON API's `objects.rewrite`, over objects kept by bucket and name,
//! so a rollout's backup copy can run offline (large objects take a second call, as Google's do).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::wire::rfc3339;

/// Objects above this many bytes are copied in more than one call, with a `rewriteToken`.
pub const REWRITE_CHUNK: u64 = 64 * 1024 * 1024;

/// A bucket and an object name.
type ObjectKey = (String, String);

/// A rewrite under way: from, to, and the bytes copied so far.
type PendingRewrite = (ObjectKey, ObjectKey, u64);

#[derive(Debug, Clone)]
struct StoredObject {
    size: u64,
    generation: u64,
    created: SystemTime,
}

/// Buckets and their objects.
#[derive(Debug, Default)]
pub(crate) struct Storage {
    objects: BTreeMap<ObjectKey, StoredObject>,
    generation: u64,
    /// Rewrites under way: token → (source, destination, bytes done).
    pending: BTreeMap<String, PendingRewrite>,
}

impl Storage {
    pub fn put(&mut self, bucket: &str, name: &str, size: u64, now: SystemTime) {
        self.generation += 1;
        self.objects.insert(
            (bucket.to_string(), name.to_string()),
            StoredObject {
                size,
                generation: 1_700_000_000_000_000 + self.generation,
                created: now,
            },
        );
    }

    /// Names and sizes of a bucket's objects.
    pub fn list(&self, bucket: &str) -> Vec<(String, u64)> {
        self.objects
            .iter()
            .filter(|((b, _), _)| b == bucket)
            .map(|((_, name), object)| (name.clone(), object.size))
            .collect()
    }

    /// `POST /storage/v1/b/{sb}/o/{so}/rewriteTo/b/{db}/o/{do}`.
    pub fn rewrite(
        &mut self,
        source: ObjectKey,
        destination: ObjectKey,
        query: &[(String, String)],
        now: SystemTime,
    ) -> Result<Value, ApiError> {
        for (key, _) in query {
            if ![
                "rewriteToken",
                "maxBytesRewrittenPerCall",
                "ifGenerationMatch",
                "ifSourceGenerationMatch",
                "projection",
                "userProject",
                "alt",
                "prettyPrint",
            ]
            .contains(&key.as_str())
            {
                return Err(ApiError::invalid(format!(
                    "Invalid argument: unknown parameter {key}"
                )));
            }
        }
        let Some(object) = self.objects.get(&source).cloned() else {
            return Err(ApiError::new(
                404,
                format!("No such object: {}/{}", source.0, source.1),
            ));
        };
        if let Some((_, wanted)) = query.iter().find(|(key, _)| key == "ifGenerationMatch") {
            let current = self.objects.get(&destination).map_or(0, |o| o.generation);
            if wanted.parse::<u64>().ok() != Some(current) {
                return Err(ApiError::new(
                    412,
                    "At least one of the pre-conditions you specified did not hold.",
                ));
            }
        }
        let token = query
            .iter()
            .find(|(key, _)| key == "rewriteToken")
            .map(|(_, token)| token.clone());
        let done_before = match &token {
            Some(token) => match self.pending.get(token) {
                Some((from, to, done)) if *from == source && *to == destination => *done,
                _ => {
                    return Err(ApiError::invalid(
                        "Invalid argument: the rewriteToken is invalid",
                    ));
                }
            },
            None => 0,
        };
        let done = (done_before + REWRITE_CHUNK).min(object.size);
        if done < object.size {
            let token = format!("sim-rewrite-{}", self.pending.len() + 1);
            self.pending
                .insert(token.clone(), (source, destination, done));
            return Ok(json!({
                "kind": "storage#rewriteResponse",
                "totalBytesRewritten": done.to_string(),
                "objectSize": object.size.to_string(),
                "done": false,
                "rewriteToken": token,
            }));
        }
        if let Some(token) = token {
            self.pending.remove(&token);
        }
        self.put(&destination.0, &destination.1, object.size, now);
        let copy = self.objects[&destination].clone();
        Ok(json!({
            "kind": "storage#rewriteResponse",
            "totalBytesRewritten": object.size.to_string(),
            "objectSize": object.size.to_string(),
            "done": true,
            "resource": object_json(&destination.0, &destination.1, &copy),
        }))
    }
}

fn object_json(bucket: &str, name: &str, object: &StoredObject) -> Value {
    json!({
        "kind": "storage#object",
        "id": format!("{bucket}/{name}/{}", object.generation),
        "name": name,
        "bucket": bucket,
        "generation": object.generation.to_string(),
        "metageneration": "1",
        "contentType": "application/octet-stream",
        "size": object.size.to_string(),
        "storageClass": "STANDARD",
        "timeCreated": rfc3339(object.created),
        "updated": rfc3339(object.created),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(bucket: &str, name: &str) -> (String, String) {
        (bucket.to_string(), name.to_string())
    }

    #[test]
    fn a_large_object_is_copied_in_two_calls_and_a_missing_one_is_404() {
        let now = SystemTime::UNIX_EPOCH;
        let mut storage = Storage::default();
        storage.put("db", "app/loopcloser.db", REWRITE_CHUNK + 1, now);
        let first = storage
            .rewrite(
                pair("db", "app/loopcloser.db"),
                pair("db", "copy"),
                &[],
                now,
            )
            .unwrap();
        assert_eq!(first["done"], false);
        let token = first["rewriteToken"].as_str().unwrap().to_string();
        let second = storage
            .rewrite(
                pair("db", "app/loopcloser.db"),
                pair("db", "copy"),
                &[("rewriteToken".into(), token)],
                now,
            )
            .unwrap();
        assert_eq!(second["done"], true);
        assert_eq!(second["resource"]["name"], "copy");
        assert_eq!(storage.list("db").len(), 2);
        let missing = storage
            .rewrite(pair("db", "nope"), pair("db", "x"), &[], now)
            .unwrap_err();
        assert_eq!(missing.code, 404);
    }
}
