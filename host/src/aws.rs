//! AWS SDK clients, configured from [`AwsSettings`] on top of the SDK's standard chain.
//!
//! The host reads the few AWS variables it must honour itself (region, endpoint overrides,
//! static credentials) so they can come through `Config::from_lookup` like every setting;
//! everything else (profiles, SSO, container and instance roles) stays with the standard chain.

use crate::config::AwsSettings;
use aws_config::{BehaviorVersion, Region};

/// An S3 client for `settings`: endpoint from `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`,
/// path-style addressing when `S3_FORCE_PATH_STYLE=true`.
pub async fn s3_client(settings: &AwsSettings) -> aws_sdk_s3::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(c) = &settings.static_credentials {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            None,
            "environment",
        ));
    }
    let shared = loader.load().await;
    let mut s3 = aws_sdk_s3::config::Builder::from(&shared);
    if let Some(endpoint) = &settings.s3_endpoint {
        s3 = s3.endpoint_url(endpoint);
    }
    if settings.s3_force_path_style {
        s3 = s3.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(s3.build())
}
