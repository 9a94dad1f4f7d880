//! Errors of the API as JSON `{error, detail}` with the right status: a
//! machine-readable code and a sentence for a person.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;
use crate::store::driver::Error as DbError;

/// An API error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// A short code: `bad_request`, `not_found`, `conflict`...
    pub error: &'static str,
    pub detail: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    detail: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a valid token: Authorization: Bearer <token> (see `cojobs token add`)",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.error,
            detail: &self.detail,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<DbError> for ApiError {
    /// A store error by its class: bad input 400 (an unknown job or CO
    /// 404), a conflict 409, an unreachable database 503, anything else 500.
    fn from(e: DbError) -> ApiError {
        match &e {
            DbError::Input(_) => match e.input_error() {
                Some(StoreError::NoJob(_) | StoreError::NoCo(_)) => {
                    ApiError::not_found(e.to_string())
                }
                _ => ApiError::bad_request(e.to_string()),
            },
            DbError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            DbError::Transient(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            DbError::Other(_) => {
                tracing::error!("store error: {e}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the store failed; see the server's log",
                )
            }
        }
    }
}

/// Any path no route has.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such page or endpoint")
}

/// A route asked with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method",
    )
}
