export { HeraldClient } from './client.js';
export type {
  ClientEvents,
  CloseInfo,
  ConnectionState,
  HeraldClientOptions,
  WebSocketConstructor,
  WebSocketLike,
} from './client.js';
export { Subscription } from './subscription.js';
export type { GapEvent, SubscribeOptions, SubscriptionEvents } from './subscription.js';
export { Job, jobStateFromSnapshot, nextJobState } from './job.js';
export type { JobEvents, JobOptions, JobState } from './job.js';
export { Presence } from './presence.js';
export type { PresenceEvents, PresenceOptions, PresenceState } from './presence.js';
export { backoffDelay } from './backoff.js';
export { PROTOCOL_MESSAGE_TYPES, channelOf } from './protocol.js';
export type * from './protocol.js';
