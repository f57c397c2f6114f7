//! Messages decoded with a descriptor set (`grpc.descriptors`): named fields, through
//! prost-reflect, in the proto3 JSON mapping — with the `.proto` field names (what a reader of
//! the schema writes rules with) and 64-bit integers as numbers (so `tolerance` and number
//! comparison apply to them as to any number). Fields at their default value are absent on
//! the wire in proto3 and absent here, on both sides alike.

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

/// A descriptor set, read once at start.
#[derive(Debug)]
pub struct Schema {
    pool: DescriptorPool,
}

impl Schema {
    /// Reads a serialised `FileDescriptorSet`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Schema, String> {
        let pool = DescriptorPool::decode(bytes)
            .map_err(|e| format!("not a protobuf FileDescriptorSet: {e}"))?;
        if pool.services().next().is_none() {
            return Err("the descriptor set describes no service".into());
        }
        Ok(Schema { pool })
    }

    /// Fully qualified names of the services described.
    pub fn services(&self) -> Vec<String> {
        self.pool
            .services()
            .map(|s| s.full_name().to_string())
            .collect()
    }

    /// The output message of the method a request path names (`/pkg.Service/Method`).
    pub(super) fn output(&self, path: &str) -> Option<MessageDescriptor> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
            .map(|m| m.output())
    }

    /// One message as JSON (see the module docs).
    pub(super) fn decode(&self, desc: &MessageDescriptor, msg: &[u8]) -> Result<Value, String> {
        let m = DynamicMessage::decode(desc.clone(), msg)
            .map_err(|e| format!("not a {}: {e}", desc.full_name()))?;
        let opts = SerializeOptions::new()
            .stringify_64_bit_integers(false)
            .use_proto_field_name(true);
        m.serialize_with_options(serde_json::value::Serializer, &opts)
            .map_err(|e| e.to_string())
    }
}
