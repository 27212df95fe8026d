import type {Upstream} from '../upstream.js'

export type PathName = 'direct' | 'ksctl-tls' | 'ksctl-tls-kube' | 'ksctl-plain' | 'openssh' | 'chisel'

/** A client certificate for front ends that authenticate clients (ksctl's HTTPS front end). */
export interface ClientTls {
  caFile: string
  certFile: string
  keyFile: string
}

/** Where a client sends its requests so that they reach the upstream through the path. */
export interface Endpoint {
  /** Without a trailing slash; the upstream's paths (`/json`, `/bytes/N`, `/stream`) are appended. */
  baseUrl: string
  tls?: ClientTls
}

/** Which end of the tunnel a process is: the host side clients reach, or the side next to the upstream. */
export type TunnelSide = 'server' | 'agent'

export interface TunnelProcess {
  side: TunnelSide
  /** What runs there, e.g. sshd or chisel client. */
  label: string
  pid: number
}

export interface RunningPath {
  endpoint: Endpoint
  processes(): TunnelProcess[]
  /** Kills the agent side (SIGKILL) and starts it again; undefined where there is no agent side. */
  agentRestart?: {kill(): Promise<void>; start(): Promise<void>}
  stop(): Promise<void>
}

export type Availability = {available: true} | {available: false; reason: string}

export interface AgentFleet {
  proxy: TunnelProcess
  connectAllMs: number
  stop(): Promise<void>
}

export interface BenchPath {
  name: PathName
  /** Checks (and for peers installs) what the path needs; the reason when it cannot run here. */
  prepare(): Promise<Availability>
  start(upstream: Upstream): Promise<RunningPath>
  /** Many agents to one proxy: only ksctl has a standalone multi-agent mode. */
  startAgentFleet?(upstream: Upstream, count: number): Promise<AgentFleet>
}
