//! RFC 7807 error bodies (`application/problem+json`), as IMS and BOS send them.
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// IMS's own detail texts (`src/server/errors.py`).
pub const MISSING_INPUT: &str = "No input provided. Determine the specific information that is missing or invalid and then re-run the request with valid information.";
pub const VALIDATION_FAILED: &str = "Input data was understood, but failed validation. Re-run request with valid input values for the fields indicated in the response.";
pub const NOT_FOUND: &str = "Requested resource does not exist. Re-run request with valid ID.";
pub const PATCH_CONFLICT: &str = "Requested resource exists, but cannot be patched due to a patch conflict. Re-run request with valid input values.";

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    /// IMS validation failures: field -> messages.
    pub errors: Option<Value>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            detail: detail.into(),
            errors: None,
        }
    }
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, detail)
    }
    /// 422 with an `errors` object keyed by field.
    pub fn invalid(errors: Value) -> Problem {
        Problem {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: VALIDATION_FAILED.into(),
            errors: Some(errors),
        }
    }
    /// 422 from link or S3 checks: real IMS gives these only a `detail`.
    pub fn unprocessable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Problem {
        Problem::invalid(json!({ field: [message.into()] }))
    }
    pub fn internal(detail: impl std::fmt::Display) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, detail.to_string())
    }
}

impl From<crate::s3::S3Error> for Problem {
    fn from(e: crate::s3::S3Error) -> Problem {
        Problem::internal(e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        // Connexion leaves `type` out (RFC 7807 then means about:blank).
        let mut body = json!({
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(errors) = self.errors {
            body["errors"] = errors;
        }
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}
