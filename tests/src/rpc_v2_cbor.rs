//! A protocol bridge in front of moto for services the AWS SDK for Rust now calls with the
//! Smithy RPC v2 CBOR protocol (CloudWatch since aws-sdk-cloudwatch 1.100). moto answers
//! CloudWatch in the Query and AWS JSON 1.0 protocols only (getmoto/moto#9195: no CBOR support
//! is planned), so every `PutMetricData` from a current SDK fails against moto with
//! "unexpected type 0x3c at position 0: expected map" (moto's XML).
//!
//! The bridge re-encodes, nothing more: `POST /service/{Service}/operation/{Operation}` with a
//! CBOR body becomes `POST /` with `X-Amz-Target: {Service}.{Operation}` and the same document
//! as JSON, and moto's JSON answer (success or error, with its status) goes back as CBOR. moto
//! still validates, stores and serves the data. Timestamps (CBOR tag 1, epoch seconds) become
//! JSON numbers of epoch seconds, which is how AWS JSON 1.0 carries them; gzipped requests
//! (the SDK compresses `PutMetricData` from 10 KB) are unzipped first. Answers go back untagged,
//! so read back operations whose output has timestamps with [`json_call`] instead.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use minicbor::data::Type;
use minicbor::{Decoder, Encoder};
use serde_json::{Map, Number, Value};

use crate::services::{Handler, InProcessServer, respond};

/// An in-process server on 127.0.0.1 that speaks RPC v2 CBOR to SDK clients and AWS JSON 1.0 to
/// the server behind it. Stopped on drop.
#[derive(Debug)]
pub struct RpcV2CborBridge {
    server: InProcessServer,
}

impl RpcV2CborBridge {
    /// Starts a bridge to `upstream` (e.g. [`crate::services::Moto::endpoint`]).
    pub fn start(upstream: &str) -> Result<RpcV2CborBridge> {
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let client = reqwest::Client::new();
        let handler: Handler = Arc::new(move |request: Request<hyper::body::Incoming>| {
            let upstream = upstream.clone();
            let client = client.clone();
            Box::pin(async move {
                match forward(&client, &upstream, request).await {
                    Ok((status, body)) => {
                        let mut response = respond(status, "application/cbor", body);
                        response.headers_mut().insert(
                            "smithy-protocol",
                            hyper::header::HeaderValue::from_static("rpc-v2-cbor"),
                        );
                        response
                    }
                    Err(err) => {
                        // Printed too: the SDK reports only that the answer was not CBOR.
                        eprintln!("rpc-v2-cbor bridge: {err:#}");
                        respond(
                            StatusCode::BAD_GATEWAY,
                            "text/plain",
                            format!("rpc-v2-cbor bridge: {err:#}"),
                        )
                    }
                }
            })
        });
        Ok(RpcV2CborBridge {
            server: InProcessServer::start("rpc-v2-cbor-bridge", handler)?,
        })
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_<SERVICE>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }
}

/// An AWS JSON 1.0 API: the `X-Amz-Target` prefix, and the signing name moto routes by.
#[derive(Debug, Clone, Copy)]
pub struct JsonApi {
    /// The target prefix, e.g. `GraniteServiceVersion20100801`.
    pub target: &'static str,
    /// The SigV4 signing name, e.g. `monitoring`.
    pub signing_name: &'static str,
}

/// CloudWatch (metrics).
pub const CLOUDWATCH: JsonApi = JsonApi {
    target: "GraniteServiceVersion20100801",
    signing_name: "monitoring",
};

/// One AWS JSON 1.0 call to moto, e.g. `json_call(&moto.endpoint(), CLOUDWATCH,
/// "GetMetricStatistics", &body)`: how a test reads back what the host wrote. moto checks no
/// signature, but routes by the credential scope, so the call carries an unsigned one.
pub async fn json_call(
    endpoint: &str,
    api: JsonApi,
    operation: &str,
    body: &Value,
) -> Result<Value> {
    let scope = format!(
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{}/aws4_request, \
         SignedHeaders=host, Signature=0",
        api.signing_name
    );
    let (status, answer) = json_request(
        &reqwest::Client::new(),
        endpoint,
        api.target,
        operation,
        body.to_string().into_bytes(),
        Some(&scope),
    )
    .await?;
    if !status.is_success() {
        bail!("{}.{operation}: HTTP {status}: {answer}", api.target);
    }
    Ok(answer)
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    request: Request<hyper::body::Incoming>,
) -> Result<(StatusCode, Vec<u8>)> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let (service, operation) = path
        .strip_prefix("/service/")
        .and_then(|rest| rest.split_once("/operation/"))
        .ok_or_else(|| anyhow!("not an RPC v2 path: {path}"))?;
    let mut body = body.collect().await?.to_bytes().to_vec();
    if parts
        .headers
        .get(hyper::header::CONTENT_ENCODING)
        .map(|v| v.as_bytes())
        == Some(b"gzip")
    {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
            .context("gunzipping the request")?;
        body = plain;
    }
    let document = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        let mut decoder = Decoder::new(&body);
        decode(&mut decoder).context("decoding the CBOR request")?
    };
    // moto reads the region and account from the signature's credential scope.
    let authorization = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (status, answer) = json_request(
        client,
        upstream,
        service,
        operation,
        document.to_string().into_bytes(),
        authorization,
    )
    .await?;
    let mut encoder = Encoder::new(Vec::new());
    encode(&mut encoder, &answer)?;
    Ok((status, encoder.into_writer()))
}

async fn json_request(
    client: &reqwest::Client,
    endpoint: &str,
    service: &str,
    operation: &str,
    body: Vec<u8>,
    authorization: Option<&str>,
) -> Result<(StatusCode, Value)> {
    let mut request = client
        .post(format!("{}/", endpoint.trim_end_matches('/')))
        .header("Content-Type", "application/x-amz-json-1.0")
        .header("X-Amz-Target", format!("{service}.{operation}"))
        .body(body);
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let response = request.send().await?;
    let status = StatusCode::from_u16(response.status().as_u16())?;
    let bytes = response.bytes().await?;
    let answer = if bytes.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{service}.{operation} answered HTTP {status} with no JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })?
    };
    Ok((status, answer))
}

/// One CBOR data item as JSON.
fn decode(d: &mut Decoder<'_>) -> Result<Value> {
    Ok(match d.datatype()? {
        Type::Bool => Value::Bool(d.bool()?),
        Type::Null | Type::Undefined => {
            d.skip()?;
            Value::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::from(d.u64()?),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => Value::from(d.i64()?),
        Type::F16 | Type::F32 | Type::F64 => {
            let x = d.f64()?;
            Number::from_f64(x)
                .map(Value::Number)
                .ok_or_else(|| anyhow!("{x} has no JSON form"))?
        }
        Type::String | Type::StringIndef => {
            let mut text = String::new();
            for chunk in d.str_iter()? {
                text.push_str(chunk?);
            }
            Value::String(text)
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array()?;
            let mut items = Vec::new();
            while more(d, len, items.len())? {
                items.push(decode(d)?);
            }
            Value::Array(items)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map()?;
            let mut fields = Map::new();
            while more(d, len, fields.len())? {
                let key = d.str()?.to_owned();
                fields.insert(key, decode(d)?);
            }
            Value::Object(fields)
        }
        // Tag 1 (epoch-seconds timestamp) is a plain number in AWS JSON 1.0.
        Type::Tag => {
            d.tag()?;
            decode(d)?
        }
        other => bail!("CBOR {other} has no JSON form here"),
    })
}

/// Whether a container of `len` items (`None`: indefinite, ended by a break) has more after
/// `seen`; consumes the break.
fn more(d: &mut Decoder<'_>, len: Option<u64>, seen: usize) -> Result<bool> {
    Ok(match len {
        Some(len) => (seen as u64) < len,
        None if d.datatype()? == Type::Break => {
            d.skip()?;
            false
        }
        None => true,
    })
}

fn encode(e: &mut Encoder<Vec<u8>>, value: &Value) -> Result<()> {
    match value {
        Value::Null => {
            e.null()?;
        }
        Value::Bool(b) => {
            e.bool(*b)?;
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                e.u64(u)?;
            } else if let Some(i) = n.as_i64() {
                e.i64(i)?;
            } else {
                e.f64(n.as_f64().unwrap_or(f64::NAN))?;
            }
        }
        Value::String(s) => {
            e.str(s)?;
        }
        Value::Array(items) => {
            e.array(items.len() as u64)?;
            for item in items {
                encode(e, item)?;
            }
        }
        Value::Object(fields) => {
            e.map(fields.len() as u64)?;
            for (key, item) in fields {
                e.str(key)?;
                encode(e, item)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_survives_a_round_trip_through_cbor() {
        let value = json!({"Namespace": "N", "MetricData": [
            {"MetricName": "M", "Value": 1.5, "Count": 3, "Neg": -2, "Ok": true, "None": null}
        ]});
        let mut encoder = Encoder::new(Vec::new());
        encode(&mut encoder, &value).unwrap();
        let bytes = encoder.into_writer();
        assert_eq!(decode(&mut Decoder::new(&bytes)).unwrap(), value);
    }

    #[test]
    fn a_timestamp_tag_becomes_epoch_seconds_and_indefinite_containers_end_at_break() {
        // {_ "T": 1(1700000000.5), "L": [_ "a", "b"]}
        let mut encoder = Encoder::new(Vec::new());
        encoder
            .begin_map()
            .unwrap()
            .str("T")
            .unwrap()
            .tag(minicbor::data::Tag::new(1))
            .unwrap()
            .f64(1_700_000_000.5)
            .unwrap()
            .str("L")
            .unwrap()
            .begin_array()
            .unwrap()
            .str("a")
            .unwrap()
            .str("b")
            .unwrap()
            .end()
            .unwrap()
            .end()
            .unwrap();
        let bytes = encoder.into_writer();
        assert_eq!(
            decode(&mut Decoder::new(&bytes)).unwrap(),
            json!({"T": 1_700_000_000.5, "L": ["a", "b"]})
        );
    }
}
