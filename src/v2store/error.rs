//! `V2Error`: etcd's v2 error codes, their messages and HTTP statuses (the JSON body
//! `{"errorCode":N,"message":..,"cause":..,"index":N}` is written by `http::v2`).
//!
//! Invariant: `message()` and `http_status()` are total over the codes etcd defines; an
//! unknown code answers 400 as etcd's `StatusCode` does.

use serde::{Deserialize, Serialize};

pub const KEY_NOT_FOUND: u16 = 100;
pub const TEST_FAILED: u16 = 101;
pub const NOT_FILE: u16 = 102;
pub const NOT_DIR: u16 = 104;
pub const NODE_EXIST: u16 = 105;
pub const ROOT_READ_ONLY: u16 = 107;
pub const DIR_NOT_EMPTY: u16 = 108;
pub const UNAUTHORIZED: u16 = 110;
pub const PREV_VALUE_REQUIRED: u16 = 201;
pub const TTL_NAN: u16 = 202;
pub const INDEX_NAN: u16 = 203;
pub const INVALID_FIELD: u16 = 209;
pub const INVALID_FORM: u16 = 210;
pub const REFRESH_VALUE: u16 = 211;
pub const REFRESH_TTL_REQUIRED: u16 = 212;
pub const RAFT_INTERNAL: u16 = 300;
pub const LEADER_ELECT: u16 = 301;
pub const WATCHER_CLEARED: u16 = 400;
pub const EVENT_INDEX_CLEARED: u16 = 401;

/// One v2 error: etcd's code, the cause it reports and the store index at the time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Error {
    pub code: u16,
    pub cause: String,
    pub index: u64,
}

impl V2Error {
    pub fn new(code: u16, cause: impl Into<String>, index: u64) -> Self {
        V2Error {
            code,
            cause: cause.into(),
            index,
        }
    }

    /// etcd's message for the code.
    pub fn message(&self) -> &'static str {
        message(self.code)
    }

    /// etcd's HTTP status for the code.
    pub fn http_status(&self) -> u16 {
        match self.code {
            KEY_NOT_FOUND => 404,
            NOT_FILE | DIR_NOT_EMPTY => 403,
            UNAUTHORIZED => 401,
            TEST_FAILED | NODE_EXIST => 412,
            RAFT_INTERNAL | LEADER_ELECT => 500,
            _ => 400,
        }
    }
}

/// etcd's message text of every v2 error code.
pub fn message(code: u16) -> &'static str {
    match code {
        100 => "Key not found",
        101 => "Compare failed",
        102 => "Not a file",
        103 => "Reached the max number of peers in the cluster",
        104 => "Not a directory",
        105 => "Key already exists",
        106 => "The prefix of given key is a keyword in etcd",
        107 => "Root is read only",
        108 => "Directory not empty",
        109 => "Peer address has existed",
        110 => "The request requires user authentication",
        200 => "Value is Required in POST form",
        201 => "PrevValue is Required in POST form",
        202 => "The given TTL in POST form is not a number",
        203 => "The given index in POST form is not a number",
        204 => "Value or TTL is required in POST form",
        205 => "The given timeout in POST form is not a number",
        206 => "Name is required in POST form",
        207 => "Index or value is required",
        208 => "Index and value cannot both be specified",
        209 => "Invalid field",
        210 => "Invalid POST form",
        211 => "Value provided on refresh",
        212 => "A TTL must be provided on refresh",
        300 => "Raft Internal Error",
        301 => "During Leader Election",
        400 => "watcher is cleared due to etcd recovery",
        401 => "The event in requested index is outdated and cleared",
        500 => "Client Internal Error",
        _ => "",
    }
}

impl std::fmt::Display for V2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({}) [{}]",
            self.code,
            self.message(),
            self.cause,
            self.index
        )
    }
}

impl std::error::Error for V2Error {}
