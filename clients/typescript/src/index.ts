export {
  SidecarMemory,
  SidecarMemory as Memory,
  getMemory,
  getMemoryAsync,
  resetMemory,
  PROTOCOL_VERSION,
} from "./memory.js";
export type { MemoryHealth, SidecarMemoryOptions } from "./memory.js";
export {
  extractKeyFacts,
  generateSummary,
  mergeFacts,
  createConversationState,
  continueConversation,
  updateConversationState,
  formatContextForPrompt,
  conversationEmbeddingText,
  stateSummary,
  DEFAULT_MAX_KEY_FACTS,
} from "./continuity.js";
export { defaultSocketPath, memorydEnv, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_STARTUP_TIMEOUT_MS } from "./config.js";
export type { SidecarMemoryConfig, SidecarMemoryConfig as MemoryConfig, SidecarSettings } from "./config.js";
export * from "./errors.js";
export * from "./types.js";
export { RpcClient, RpcConnection } from "./transport.js";
export type { CallOptions, RpcClientOptions } from "./transport.js";
export { Supervisor, StartupFailure } from "./supervisor.js";
export type { ReadyInfo, SupervisorOptions, SupervisorState } from "./supervisor.js";
export { stderrLogger, silentLogger } from "./log.js";
export type { Logger } from "./log.js";
export { SidecarKV, PluginCacheBackend, KV_BATCH, type KVCaller, type KVHost, type KVEntry, type KVListedEntry, type KVStamp, type KVWriteOptions, type KVItem, type KVListOptions, type KVPage, type PluginMemoryEntry, type PluginSaveResult } from "./kv.js";
