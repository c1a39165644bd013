//! The AWS SDK configuration shared by the AWS destinations, built once at cold start.
//!
//! The standard AWS variables are read through the same lookup as the rest of [`Config`]
//! (the process environment in production, a map in tests), and whatever they leave unset
//! falls back to aws-config's standard chain (shared config files, web identity, the
//! container and instance metadata services).
//!
//! [`Config`]: crate::Config

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use std::collections::BTreeMap;

/// The per-service endpoint variables honoured, one per service the destinations use
/// (the SDK's `AWS_ENDPOINT_URL_<SERVICE>` names).
const SERVICE_ENDPOINT_VARIABLES: [&str; 6] = [
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_SNS",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_CLOUDWATCH",
    "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
];

/// AWS settings taken from the configuration lookup.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL`: one endpoint for every service (a local stand-in such as moto).
    pub endpoint_url: Option<String>,
    /// `AWS_ENDPOINT_URL_<SERVICE>`, by variable name: wins over `AWS_ENDPOINT_URL`.
    pub service_endpoints: BTreeMap<String, String>,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, when the first two
    /// are set (as on Lambda).
    pub credentials: Option<(String, String, Option<String>)>,
    /// `S3_FORCE_PATH_STYLE=true`: S3 requests use `endpoint/bucket/key` rather than
    /// `bucket.endpoint/key`. The SDK has no variable for this; stand-ins reached by host name
    /// need it (IP-literal endpoints get path style anyway).
    pub s3_force_path_style: bool,
}

impl std::fmt::Debug for AwsSettings {
    // Never prints the secret key or the session token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("service_endpoints", &self.service_endpoints)
            .field("access_key_id", &self.credentials.as_ref().map(|c| &c.0))
            .field("s3_force_path_style", &self.s3_force_path_style)
            .finish()
    }
}

impl AwsSettings {
    /// Reads the settings through `get` (which already treats blank values as unset).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let s3_force_path_style = match get("S3_FORCE_PATH_STYLE").as_deref().map(str::trim) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => anyhow::bail!("S3_FORCE_PATH_STYLE={other:?}: use true or false"),
        };
        Ok(AwsSettings {
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            endpoint_url: get("AWS_ENDPOINT_URL"),
            service_endpoints: SERVICE_ENDPOINT_VARIABLES
                .iter()
                .filter_map(|name| get(name).map(|url| (name.to_string(), url)))
                .collect(),
            credentials: match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => Some((id, secret, get("AWS_SESSION_TOKEN"))),
                _ => None,
            },
            s3_force_path_style,
        })
    }

    /// Loads the SDK configuration: these settings first, then the standard chain.
    pub async fn load(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some((id, secret, token)) = &self.credentials {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                token.clone(),
                None,
                "environment",
            ));
        }
        loader.load().await
    }

    /// The endpoint for one service (`S3`, `SQS`, ...), when its own variable is set.
    pub fn service_endpoint(&self, service: &str) -> Option<&str> {
        self.service_endpoints
            .get(&format!("AWS_ENDPOINT_URL_{service}"))
            .map(String::as_str)
    }
}
