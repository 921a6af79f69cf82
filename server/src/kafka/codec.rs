//! Kafka frames to requests and responses to frames, with the `kafka-protocol` crate's codecs,
//! and the API versions this listener speaks.
//!
//! A frame body is `api_key: i16, api_version: i16, correlation_id: i32, ...` (the request
//! header, then the body). What a body that is not a request we speak gets is Kafka's answer:
//! - an unknown API key, a version outside [`supported_versions`], a header or body that does not
//!   decode: the connection is closed ([`Undecodable`]; Kafka's `InvalidRequestException`);
//! - the exception, ApiVersions at a version above ours: error 35 with a v0 body listing our
//!   versions, so that a newer client retries at one we speak (KIP-511).

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::errors::UNSUPPORTED_VERSION;

/// The APIs this listener answers, with the versions it speaks: minimums as Kafka 4 has them
/// (no message format before v2), maximums where our translation is complete (topic ids, which
/// Produce v13 and Fetch v13 need, are not kept; fetch sessions are declined, see `fetch`).
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    // Consumer groups (see `groups`): Kafka 4's minimums (KIP-896).
    (ApiKey::JoinGroup, 2, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    // Topic and group admin (see `topic_admin`).
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    // SASL (see `sasl`): SCRAM only. SaslHandshake v0 is advertised as Kafka 4 does (kcat 1.7.1's
    // librdkafka 2.0.2 enables SCRAM only when it is) and
    // answered as v1; the raw SASL frames a pre-SaslAuthenticate client then sends do not decode
    // as requests and close the connection.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The versions of `api_key` this listener speaks, `None` for an API it does not serve.
pub fn supported_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(key, _, _)| *key == api_key).map(|&(_, min, max)| (min, max))
}

/// The ApiVersions list: every API this listener serves, with its versions.
pub fn api_versions() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(key, min, max)| ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max))
        .collect()
}

/// A frame this listener answers.
#[derive(Debug)]
pub enum Decoded {
    Request {
        header: RequestHeader,
        api_key: ApiKey,
        version: i16,
        request: Box<RequestKind>,
    },
    /// ApiVersions at a version above ours: answered with error 35 and a v0 body.
    ApiVersionsTooNew {
        correlation_id: i32,
    },
}

/// Why a frame closes the connection (Kafka closes it too: the client sent something the
/// broker does not speak, and nothing it could answer would be understood).
#[derive(Debug, thiserror::Error)]
pub enum Undecodable {
    #[error("a request frame of {0} bytes is shorter than a request header")]
    Short(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("API {api_key:?} is not served by this listener")]
    Unserved { api_key: ApiKey },
    #[error("API {api_key:?} version {version} is outside the versions this listener speaks ({min}..={max})")]
    Version { api_key: ApiKey, version: i16, min: i16, max: i16 },
    #[error("API {api_key:?} v{version}: {message}")]
    Malformed { api_key: ApiKey, version: i16, message: String },
}

/// The fixed start of every request header: api_key, api_version, correlation_id.
const HEADER_FIXED_BYTES: usize = 8;

/// Decodes one frame body (the length prefix already taken off). Never panics on any input
/// (proptest `any_bytes_decode_without_panic`).
pub fn decode(frame: Bytes) -> Result<Decoded, Undecodable> {
    if frame.len() < HEADER_FIXED_BYTES {
        return Err(Undecodable::Short(frame.len()));
    }
    let mut fixed = &frame[..HEADER_FIXED_BYTES];
    let (key, version, correlation_id) = (fixed.get_i16(), fixed.get_i16(), fixed.get_i32());
    let api_key = ApiKey::try_from(key).map_err(|_| Undecodable::UnknownApi(key))?;
    let (min, max) = supported_versions(api_key).ok_or(Undecodable::Unserved { api_key })?;
    if api_key == ApiKey::ApiVersions && version > max {
        return Ok(Decoded::ApiVersionsTooNew { correlation_id });
    }
    if !(min..=max).contains(&version) {
        return Err(Undecodable::Version { api_key, version, min, max });
    }
    let malformed = |error: anyhow::Error| Undecodable::Malformed { api_key, version, message: error.to_string() };
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, api_key.request_header_version(version)).map_err(malformed)?;
    let request = RequestKind::decode(api_key, &mut body, version).map_err(malformed)?;
    Ok(Decoded::Request { header, api_key, version, request: Box::new(request) })
}

/// One response frame: length prefix, response header, body at `version`.
pub fn encode(api_key: ApiKey, version: i16, correlation_id: i32, response: &ResponseKind) -> anyhow::Result<Bytes> {
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&[0; 4]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut frame, api_key.response_header_version(version))?;
    response.encode(&mut frame, version)?;
    let length = u32::try_from(frame.len() - 4).expect("a response fits a u32 length");
    frame[..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame.freeze())
}

/// The answer to ApiVersions above our versions: error 35, our versions, in a v0 body (what
/// every client can read).
pub fn api_versions_too_new(correlation_id: i32) -> Bytes {
    let body = ApiVersionsResponse::default().with_error_code(UNSUPPORTED_VERSION).with_api_keys(api_versions());
    encode(ApiKey::ApiVersions, 0, correlation_id, &ResponseKind::ApiVersions(body)).expect("a v0 ApiVersions response encodes")
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    use super::*;

    /// A request frame body as a client writes it.
    pub fn request_frame(api_key: ApiKey, version: i16, correlation_id: i32, request: &RequestKind) -> Bytes {
        let mut frame = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header.encode(&mut frame, api_key.request_header_version(version)).unwrap();
        request.encode(&mut frame, version).unwrap();
        frame.freeze()
    }

    #[test]
    fn supported_versions_are_within_the_codecs_and_kafka_4_minimums() {
        for &(key, min, max) in SUPPORTED {
            let valid = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(valid.min <= min && max <= valid.max, "{key:?} {min}..={max} outside the codec's {valid}");
        }
        // Kafka 4 removed the message formats before v2 (KIP-896): no Produce below 3, no Fetch below 4.
        assert_eq!(supported_versions(ApiKey::Produce).unwrap().0, 3);
        assert_eq!(supported_versions(ApiKey::Fetch).unwrap().0, 4);
    }

    #[test]
    fn every_supported_request_version_decodes() {
        for (key, version) in served_versions() {
            let decoded = decode(request_frame(key, version, 7, &default_request(key))).unwrap();
            assert!(matches!(decoded, Decoded::Request { version: v, api_key, .. } if v == version && api_key == key));
        }
    }

    /// Every (API, version) this listener serves: what the fuzzing below must reach.
    fn served_versions() -> Vec<(ApiKey, i16)> {
        SUPPORTED.iter().flat_map(|&(key, min, max)| (min..=max).map(move |version| (key, version))).collect()
    }

    /// A valid request header for `key` at `version` (the header version that API and version
    /// use), with no body after it.
    fn header_only(key: ApiKey, version: i16) -> BytesMut {
        let mut frame = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(11)
            .with_client_id(Some(StrBytes::from_static_str("fuzz")));
        header.encode(&mut frame, key.request_header_version(version)).unwrap();
        frame
    }

    /// Bad input (issue 16), exhaustively over the served versions: each (API, version) gets
    /// random bodies behind a valid header, so that every body decoder runs on garbage, not
    /// only the header decoder. Deterministic (a fixed seed): the same bodies on every run.
    #[test]
    fn random_bodies_behind_a_valid_header_never_panic_for_every_served_version() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(16);
        let mut decoded_count = 0;
        for (key, version) in served_versions() {
            for _ in 0..200 {
                let mut frame = header_only(key, version);
                let body_bytes = rng.gen_range(0..512);
                frame.extend((0..body_bytes).map(|_| rng.gen::<u8>()));
                if let Ok(Decoded::Request { api_key, version: v, .. }) = decode(frame.freeze()) {
                    assert_eq!((api_key, v), (key, version));
                    decoded_count += 1;
                }
            }
        }
        // Some garbage decodes (e.g. an empty ApiVersions body); most is refused.
        assert!(decoded_count < served_versions().len() * 200, "every random body decoded: the bodies are not reaching the decoders");
    }

    #[test]
    fn api_versions_above_ours_get_error_35_in_a_v0_body() {
        let frame = request_frame(ApiKey::ApiVersions, 4, 9, &RequestKind::ApiVersions(ApiVersionsRequest::default()));
        let mut too_new = BytesMut::from(&frame[..]);
        too_new[2..4].copy_from_slice(&99i16.to_be_bytes());
        let Decoded::ApiVersionsTooNew { correlation_id } = decode(too_new.freeze()).unwrap() else { panic!("not answered") };
        let mut answer = api_versions_too_new(correlation_id);
        answer.advance(4);
        let header = ResponseHeader::decode(&mut answer, 0).unwrap();
        assert_eq!(header.correlation_id, 9);
        let body = ApiVersionsResponse::decode(&mut answer, 0).unwrap();
        assert_eq!(body.error_code, UNSUPPORTED_VERSION);
        assert_eq!(body.api_keys.len(), SUPPORTED.len());
        assert!(!answer.has_remaining());
    }

    #[test]
    fn unknown_apis_unserved_apis_and_versions_out_of_range_are_undecodable() {
        let metadata = request_frame(ApiKey::Metadata, 1, 1, &RequestKind::Metadata(MetadataRequest::default()));
        let mut unknown = BytesMut::from(&metadata[..]);
        unknown[..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(decode(unknown.freeze()), Err(Undecodable::UnknownApi(999))));
        let mut unserved = BytesMut::from(&metadata[..]);
        unserved[..2].copy_from_slice(&(ApiKey::EndTxn as i16).to_be_bytes());
        assert!(matches!(decode(unserved.freeze()), Err(Undecodable::Unserved { .. })));
        let mut too_new = BytesMut::from(&metadata[..]);
        too_new[2..4].copy_from_slice(&13i16.to_be_bytes());
        assert!(matches!(decode(too_new.freeze()), Err(Undecodable::Version { version: 13, .. })));
        for cut in 0..metadata.len() {
            assert!(decode(metadata.slice(..cut)).is_err(), "a frame cut at {cut} decoded");
        }
    }

    /// A default request of a served API (every served version encodes it).
    fn default_request(key: ApiKey) -> RequestKind {
        use kafka_protocol::messages::*;
        match key {
            ApiKey::Produce => RequestKind::Produce(ProduceRequest::default()),
            ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
            ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
            ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
            ApiKey::FindCoordinator => RequestKind::FindCoordinator(FindCoordinatorRequest::default()),
            ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
            ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
            ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
            ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
            ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
            ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
            ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
            ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
            ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
            ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
            ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
            ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
            ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest::default()),
            ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(ConsumerGroupDescribeRequest::default()),
            ApiKey::CreatePartitions => RequestKind::CreatePartitions(CreatePartitionsRequest::default()),
            ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
            ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default()),
            ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
            ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
            ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
            ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
            ApiKey::SaslHandshake => RequestKind::SaslHandshake(SaslHandshakeRequest::default()),
            ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(SaslAuthenticateRequest::default()),
            other => panic!("{other:?} is not served"),
        }
    }

    #[test]
    fn a_frame_naming_a_huge_array_is_refused_without_aborting() {
        // Metadata v1, correlation id 1, null client id, then a topic array of i32::MAX entries:
        // the codec reserves ~150 GB before reading one (see crate::alloc).
        let mut frame = BytesMut::new();
        for field in [&3i16.to_be_bytes()[..], &1i16.to_be_bytes(), &1i32.to_be_bytes(), &(-1i16).to_be_bytes(), &i32::MAX.to_be_bytes()] {
            frame.extend_from_slice(field);
        }
        assert!(matches!(decode(frame.freeze()), Err(Undecodable::Malformed { .. })));
    }

    proptest! {
        /// A valid header of any served (API, version), then random body bytes: the body
        /// decoders, not only the header's, see garbage; refused or decoded, never a panic.
        #[test]
        fn random_bodies_behind_a_valid_header_decode_without_panic(
            pick in any::<prop::sample::Index>(),
            body in prop::collection::vec(any::<u8>(), 0..1024),
        ) {
            let served = served_versions();
            let (key, version) = served[pick.index(served.len())];
            let mut frame = header_only(key, version);
            frame.extend_from_slice(&body);
            let _ = decode(frame.freeze());
        }

        /// Bad input (issue 16): any bytes after a served API key and version decode or are
        /// refused, never panic or abort.
        #[test]
        fn any_bytes_decode_without_panic(
            key in prop::sample::select(SUPPORTED.iter().map(|s| s.0 as i16).collect::<Vec<_>>()),
            version in 0i16..14,
            rest in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut frame = BytesMut::new();
            frame.extend_from_slice(&key.to_be_bytes());
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(&rest);
            let _ = decode(frame.freeze());
        }

        /// Valid requests of every served API and version with a field overwritten (array
        /// lengths and string lengths included: i32::MAX, -1, random) and cut short: refused or
        /// decoded, never a panic or an abort.
        #[test]
        fn damaged_requests_decode_without_panic(
            api in 0..SUPPORTED.len(),
            version_pick in any::<prop::sample::Index>(),
            position in any::<prop::sample::Index>(),
            value in prop_oneof![Just(i32::MAX), Just(-1), Just(0x7fff_0000), any::<i32>()],
            cut in any::<prop::sample::Index>(),
        ) {
            let (key, min, max) = SUPPORTED[api];
            let version = min + version_pick.index((max - min + 1) as usize) as i16;
            let valid = request_frame(key, version, 5, &default_request(key));
            prop_assert!(decode(valid.clone()).is_ok(), "{key:?} v{version}: a valid request did not decode");
            let mut damaged = BytesMut::from(&valid[..]);
            let at = HEADER_FIXED_BYTES + position.index(damaged.len() - HEADER_FIXED_BYTES);
            let end = (at + 4).min(damaged.len());
            damaged[at..end].copy_from_slice(&value.to_be_bytes()[..end - at]);
            let _ = decode(damaged.clone().freeze());
            let keep = HEADER_FIXED_BYTES + cut.index(damaged.len() - HEADER_FIXED_BYTES);
            let _ = decode(damaged.freeze().slice(..keep));
        }
    }
}
