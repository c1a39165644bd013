//! How the host reaches AWS, for plugin sources (`s3://`) and the AWS destinations alike.
//!
//! The host reads the few AWS variables it must honour itself (region, endpoint overrides,
//! static credentials) so they come through [`Config::from_lookup`] like every setting (the
//! process environment in production, a map in tests); whatever they leave unset comes from
//! aws-config's standard chain (shared config files, web identity, the container and instance
//! metadata services).
//!
//! [`Config::from_lookup`]: crate::Config::from_lookup

use anyhow::{Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use std::collections::BTreeMap;

/// The per-service endpoint variables honoured, one per service the host calls (the SDK's
/// `AWS_ENDPOINT_URL_<SERVICE>` names).
const SERVICE_ENDPOINT_VARIABLES: [&str; 6] = [
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_SNS",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_CLOUDWATCH",
    "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
];

/// The AWS settings read with the rest of the configuration.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL`: one endpoint for every service (a local stand-in such as moto).
    /// Ignored, like the per-service ones, when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`.
    pub endpoint_url: Option<String>,
    /// `AWS_ENDPOINT_URL_<SERVICE>`, by variable name: wins over `AWS_ENDPOINT_URL`.
    pub service_endpoints: BTreeMap<String, String>,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, when the first two
    /// are set (as Lambda sets the function role's).
    pub static_credentials: Option<StaticCredentials>,
    /// `S3_FORCE_PATH_STYLE=true`: S3 requests use `endpoint/bucket/key` rather than
    /// `bucket.endpoint/key`. The SDK has no variable for this; S3-compatible servers reached by
    /// host name need it (IP-literal endpoints get path style anyway).
    pub s3_force_path_style: bool,
}

/// Credentials given as variables.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsSettings {
    // Never prints the secret key or the session token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("service_endpoints", &self.service_endpoints)
            .field(
                "access_key_id",
                &self.static_credentials.as_ref().map(|c| &c.access_key_id),
            )
            .field("s3_force_path_style", &self.s3_force_path_style)
            .finish()
    }
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl AwsSettings {
    /// Reads the AWS variables through `lookup`; blank values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let flag = |key: &str| match get(key).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("false" | "0" | "no") => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some(other) => bail!("{key}={other:?}: use true or false"),
        };
        let endpoints = !flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")?;
        Ok(AwsSettings {
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            endpoint_url: get("AWS_ENDPOINT_URL").filter(|_| endpoints),
            service_endpoints: SERVICE_ENDPOINT_VARIABLES
                .iter()
                .filter(|_| endpoints)
                .filter_map(|name| get(name).map(|url| (name.to_string(), url)))
                .collect(),
            static_credentials: match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
                (Some(access_key_id), Some(secret_access_key)) => Some(StaticCredentials {
                    access_key_id,
                    secret_access_key,
                    session_token: get("AWS_SESSION_TOKEN"),
                }),
                _ => None,
            },
            s3_force_path_style: flag("S3_FORCE_PATH_STYLE")?,
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
        if let Some(c) = &self.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                c.session_token.clone(),
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

    /// An S3 client on `sdk`: the S3 endpoint when set, path style when asked for.
    pub fn s3_client(&self, sdk: &SdkConfig) -> aws_sdk_s3::Client {
        let mut config =
            aws_sdk_s3::config::Builder::from(sdk).force_path_style(self.s3_force_path_style);
        if let Some(url) = self.service_endpoint("S3") {
            config = config.endpoint_url(url);
        }
        aws_sdk_s3::Client::from_conf(config.build())
    }
}

/// An S3 client for `settings` (loads the SDK configuration first).
pub async fn s3_client(settings: &AwsSettings) -> aws_sdk_s3::Client {
    settings.s3_client(&settings.load().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<AwsSettings> {
        AwsSettings::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn the_sdk_variables_are_read_and_secrets_never_printed() {
        let aws = settings(&[
            ("AWS_ENDPOINT_URL", "http://general"),
            ("AWS_ENDPOINT_URL_S3", "http://s3-only"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("S3_FORCE_PATH_STYLE", "true"),
        ])
        .unwrap();
        assert_eq!(aws.endpoint_url.as_deref(), Some("http://general"));
        assert_eq!(aws.service_endpoint("S3"), Some("http://s3-only"));
        assert_eq!(aws.service_endpoint("SQS"), None);
        assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
        assert!(aws.s3_force_path_style);
        let printed = format!("{aws:?}");
        assert!(
            !printed.contains("secret") && !printed.contains("token"),
            "{printed}"
        );
    }

    #[test]
    fn endpoints_can_be_ignored_and_bad_flags_are_errors() {
        let aws = settings(&[
            ("AWS_ENDPOINT_URL", "http://general"),
            ("AWS_ENDPOINT_URL_SQS", "http://sqs"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ])
        .unwrap();
        assert_eq!((aws.endpoint_url, aws.service_endpoints.len()), (None, 0));
        let err = settings(&[("S3_FORCE_PATH_STYLE", "maybe")]).unwrap_err();
        assert!(format!("{err:#}").contains("S3_FORCE_PATH_STYLE"));
    }
}
