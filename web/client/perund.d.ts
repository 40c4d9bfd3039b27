// Type declarations of perund.js (kept beside it by hand; the JSDoc in
// perund.js is the source).

export interface Balance { mine: string; theirs: string }
export interface Contact { alias: string; address: string; commAddress: string }
export type ChannelState = 'opening' | 'open' | 'closing' | 'registered' | 'closed';
export interface Channel {
  channelId: string; peer: string; asset: string; balance: Balance; version: number; state: ChannelState;
  challengeDuration: number; openedAt: string; closedAt?: string; closedBy?: string; txHashes: string[];
  /** the peer did not answer the state comparison at login */
  unsynced?: boolean;
  /** on a channel whose dispute concluded an older state: the latest state both signed, and
   * the user's concluded share minus their latest share (base units) */
  latestVersion?: number; latestBalance?: Balance; difference?: string;
}
export interface Proposal {
  proposalId: string; peer: string; asset: string; balance: Balance; challengeDuration: number;
  expiresAt: string; status?: 'pending' | 'expired';
  /** whether the user's on-chain balance covers their share; shortfall: what is missing */
  fundable: boolean; shortfall?: string;
}
export interface Update {
  updateId: string; channelId: string; peer: string; kind: 'payment' | 'request' | 'close'; amount: string;
  version: number; balance: Balance; expiresAt: string; status?: 'pending' | 'accepted' | 'rejected' | 'expired';
}
export interface DisputeEvent {
  channelId: string; event: 'registered' | 'progressed' | 'concluded' | 'withdrawn'; version: number; timeout: string;
  byPeer: boolean; response: string;
  /** the event's transaction; absent when the node read the dispute from the contract */
  txHash?: string; sender?: string; byWatcher?: boolean;
  /** where the node's refutation of a stale registration stands */
  refutation?: 'sending' | 'mined' | 'failed';
  /** withdrawn: the user's amount; concluded and withdrawn: each side's share */
  amount?: string; balance?: Balance;
}
export interface Session {
  sessionId: string; token?: string; address: string; commAddress: string; channels: Channel[];
  pending?: { proposals: number; updates: number };
}
export interface AssetInfo { symbol: string; decimals: number; assetHolder: string; token?: string }
export interface DemoAccount { name: string; address: string; password: string }
export interface NodeInfo {
  version: string; chainId: string; adjudicator: string; assetHolders: Record<string, string>; assets: AssetInfo[];
  challengeDuration: number; responseTimeout: number; sessions: number; accountCreation: boolean;
  demoAccounts?: DemoAccount[];
}
export type Topic = 'proposals' | 'updates' | 'channels' | 'disputes';
export interface TopicEvent { proposals: Proposal; updates: Update; channels: Channel; disputes: DisputeEvent }

export interface ClientOptions {
  WebSocket?: unknown;
  timeout?: number;
  reconnect?: boolean;
  reconnectDelay?: number;
  token?: string;
}

export const ERR_CONNECTION: -32000;
export const ERR_TIMEOUT: -32001;
export const Codes: Readonly<{
  UNAUTHORIZED: 1001; NOT_FOUND: 1002; CONFLICT: 1003; PEER_UNREACHABLE: 1004; PEER_REJECTED: 1005;
  TIMED_OUT: 1006; INSUFFICIENT_FUNDS: 1007; CHAIN: 1008; WRONG_STATE: 1009; PARSE: -32700;
  INVALID_REQUEST: -32600; METHOD_NOT_FOUND: -32601; INVALID_PARAMS: -32602; INTERNAL: -32603;
}>;

export class PerundError extends Error {
  constructor(message: string, code: number, data?: unknown, method?: string);
  code: number;
  data: any;
  method?: string;
}

export class PerundClient {
  constructor(url: string, options?: ClientOptions);
  readonly connected: boolean;
  connect(): Promise<void>;
  close(): void;
  on(event: 'open' | 'close' | 'reconnect' | 'error', fn: (detail?: any) => void): () => void;
  call<T = any>(method: string, params?: unknown, opts?: { timeout?: number }): Promise<T>;
  subscribe<K extends Topic>(topic: K, handler: (event: TopicEvent[K]) => void): Promise<() => Promise<boolean>>;

  rpcDiscover(): Promise<object>;
  nodeInfo(): Promise<NodeInfo>;
  accountNew(password: string): Promise<{ address: string }>;
  accountList(): Promise<string[]>;
  sessionOpen(account: string, password: string, opts?: { manualAccept?: boolean }): Promise<Session>;
  sessionResume(sessionId: string, token: string): Promise<Session>;
  sessionClose(opts?: { force?: boolean }): Promise<{}>;
  sessionInfo(): Promise<Session>;
  contactsAdd(contact: Contact): Promise<Contact>;
  contactsList(): Promise<Contact[]>;
  contactsGet(alias: string): Promise<Contact>;
  contactsRemove(alias: string): Promise<{}>;
  chainBalance(opts?: { address?: string; asset?: string }): Promise<{ address: string; asset: string; balance: string }>;
  channelOpen(p: { peer: string; balance: Balance; asset?: string; challengeDuration?: number }): Promise<Channel>;
  channelList(opts?: { state?: ChannelState }): Promise<Channel[]>;
  channelGet(channelId: string): Promise<Channel>;
  channelSend(channelId: string, amount: string): Promise<Channel>;
  channelRequest(channelId: string, amount: string): Promise<Channel>;
  channelClose(channelId: string): Promise<Channel>;
  channelForceClose(channelId: string): Promise<Channel>;
  disputeList(channelId?: string): Promise<DisputeEvent[]>;
  proposalList(): Promise<Proposal[]>;
  proposalRespond(proposalId: string, accept: boolean, reason?: string): Promise<Channel | {}>;
  updateList(): Promise<Update[]>;
  updateRespond(updateId: string, accept: boolean, reason?: string): Promise<Channel | {}>;
}

export function formatUnits(amount: string | bigint, decimals?: number): string;
export function parseUnits(text: string, decimals?: number): bigint;
