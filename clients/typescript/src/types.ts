/** Data types of CONTRACT §3, shaped as agent-core's legacy memory types. */

export type MemoryCategory =
  | "conversation"
  | "fact"
  | "preference"
  | "task"
  | "decision"
  | "relationship"
  | "note"
  | "pattern"
  | "custom";

export const MEMORY_CATEGORIES: readonly MemoryCategory[] = [
  "conversation", "fact", "preference", "task", "decision", "relationship", "note", "pattern", "custom",
];

export type EntryType = "memory" | "state" | "conversation" | "session_chain";

export type PersonaId = "zee" | "stanley" | "johny";

export type MediaType = "text" | "image" | "video";

export interface MemoryMetadata {
  surface?: string;
  sessionId?: string;
  agent?: string;
  /** 0..1 */
  importance?: number;
  entities?: string[];
  tags?: string[];
  extra?: Record<string, unknown>;
}

export interface MediaMetadata {
  mediaType: MediaType;
  sourceUrl?: string;
  width?: number;
  height?: number;
  duration?: number;
  sizeBytes?: number;
  contentHash?: string;
}

export interface TextInput {
  type: "text";
  content: string;
}

export interface ImageInput {
  type: "image";
  url?: string;
  base64?: string;
  mimeType?: "image/jpeg" | "image/png" | "image/webp" | "image/gif" | "image/bmp";
}

export interface VideoInput {
  type: "video";
  url: string;
  startTime?: number;
  endTime?: number;
}

export type MultimodalInput = TextInput | ImageInput | VideoInput;

export interface MultimodalContent {
  contents: MultimodalInput[];
}

export interface MemoryEntry {
  id: string;
  category: MemoryCategory;
  content: string;
  summary?: string;
  embedding?: number[];
  metadata: MemoryMetadata;
  media?: MediaMetadata;
  /** Milliseconds since the epoch. */
  createdAt: number;
  accessedAt: number;
  updatedAt?: number;
  /** Milliseconds; 0 = permanent. */
  ttl?: number;
  namespace?: string;
}

export interface MemoryInput {
  category: MemoryCategory;
  content: string;
  summary?: string;
  metadata?: Partial<MemoryMetadata>;
  media?: MediaMetadata;
  multimodal?: MultimodalContent;
  ttl?: number;
  namespace?: string;
}

export interface MemorySearchParams {
  query: string;
  /** 1..100, default 10 */
  limit?: number;
  /** 0..1, default 0.5 */
  threshold?: number;
  category?: MemoryCategory | MemoryCategory[];
  /** null = every namespace; absent = the default namespace. */
  namespace?: string | null;
  tags?: string[];
  timeRange?: { start?: number; end?: number };
  includeMetadata?: boolean;
  includeVectors?: boolean;
}

export interface MemorySearchResult {
  entry: MemoryEntry;
  score: number;
  highlights?: string[];
}

/** searchMultimodal's options. */
export type MultimodalSearchParams = Omit<MemorySearchParams, "query"> & {
  mediaType?: MediaType;
};

/** searchWithRerank's options. */
export type RerankSearchParams = MultimodalSearchParams & {
  rerank?: boolean;
  /** Candidates fetched per wanted result before reranking; default 3. */
  recallMultiplier?: number;
};

export interface ListOptions {
  category?: MemoryCategory;
  namespace?: string;
  /** default 100 */
  limit?: number;
}

export interface DeleteWhereFilter {
  category?: MemoryCategory;
  namespace?: string;
  /** createdAt strictly before this time (ms). */
  olderThan?: number;
}

export interface MemoryStats {
  total: number;
  byType: Record<EntryType, number>;
  byCategory: Record<string, number>;
  /** Memories past their TTL (no read returns them) awaiting the sweeper; memoryd >= this field. */
  expired?: number;
}

export interface ConversationState {
  sessionId: string;
  leadPersona: PersonaId;
  summary: string;
  plan: string;
  objectives: string[];
  keyFacts: string[];
  sessionChain: string[];
  updatedAt: number;
}

export interface PersonasState {
  version: string;
  tiaraSwarmId?: string;
  workers: Array<{
    id: string;
    persona: PersonaId;
    role: "queen" | "drone";
    status: string;
    paneId?: string;
    pid?: number;
    currentTask?: string;
    createdAt: number;
    lastActivityAt: number;
  }>;
  tasks: Array<{
    id: string;
    persona: PersonaId;
    description: string;
    prompt: string;
    status: "pending" | "assigned" | "running" | "completed" | "failed";
    priority?: "low" | "normal" | "high" | "critical";
    workerId?: string;
    createdAt: number;
    completedAt?: number;
    result?: string;
    error?: string;
  }>;
  conversation?: ConversationState;
  lastSyncAt: number;
  stats: {
    totalTasksCompleted: number;
    totalDronesSpawned: number;
    totalTokensUsed: number;
  };
}

export interface PersonaMemoryHit {
  id: string;
  content: string;
  score: number;
  persona?: string;
}

export interface TaskContext {
  relevantMemories: Array<{ content: string; score: number }>;
  conversationState?: ConversationState;
}

/** agent-core's EmbeddingProvider shape: what the client needs to embed in Node (phase 1). */
export interface EmbeddingProvider {
  id?: string;
  model?: string;
  dimension: number;
  supportsMultimodal?: boolean;
  supportedMediaTypes?: MediaType[];
  embed(text: string): Promise<number[]>;
  embedBatch(texts: string[]): Promise<number[][]>;
  embedMultimodal?(content: MultimodalContent): Promise<number[]>;
  embedMultimodalBatch?(contents: MultimodalContent[]): Promise<number[][]>;
}

export type EmbeddingProviderType = "openai" | "google" | "voyage" | "vllm";

/** agent-core's memory.embedding settings. */
export interface EmbeddingConfig {
  provider?: EmbeddingProviderType | string;
  apiKey?: string;
  model?: string;
  dimensions?: number;
  baseUrl?: string;
}

/** agent-core's memory.reranker settings. */
export interface RerankerConfig {
  enabled?: boolean;
  provider?: "voyage" | "vllm";
  model?: string;
  apiKey?: string;
  baseUrl?: string;
}

/** system.hello's answer. */
export interface HelloResult {
  protocol: number;
  version: string;
  pid: number;
  capabilities: { embedding: boolean; rerank: boolean; multimodal: boolean; [k: string]: boolean };
  collection: string;
  dimension: number | null;
}

/** system.health's answer (fields beyond these are kept as sent). */
export interface HealthResult {
  live: boolean;
  ready: boolean;
  status: string;
  checks?: Record<string, unknown>;
  [k: string]: unknown;
}
