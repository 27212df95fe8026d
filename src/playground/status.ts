import {ClusterClients} from '../k8s/clients.js'
import {ClusterResource} from '../k8s/resources.js'
import type {KubeSphereCluster} from '../kubesphere/cluster-object.js'
import {KsctlError} from '../errors.js'
import {isAlive, readState, type Edition, type PlaygroundProcess} from './state.js'

export interface PlaygroundStatus {
  dir: string
  pid: number
  running: boolean
  edition: Edition
  phase: 'starting' | 'ready'
  startedAt: string
  kubeconfig: string
  processes: (PlaygroundProcess & {running: boolean})[]
  cluster: {
    name: string
    conditions: {type: string; status: string; message?: string}[]
    /** Why the conditions could not be read. */
    error?: string
  }
}

/** What runs in DIR: each process, its address and whether it still runs, and the member Cluster's conditions. */
export async function playgroundStatus(dir: string, requestTimeoutMs: number): Promise<PlaygroundStatus> {
  const state = readState(dir)
  if (state === undefined) {
    throw new KsctlError(`no playground in ${dir}`, {
      code: 'NOT_FOUND',
      suggestions: ['start one: ksctl playground up (or give its directory: --dir DIR)'],
    })
  }
  const running = isAlive(state.pid)
  const cluster: PlaygroundStatus['cluster'] = {name: state.cluster, conditions: []}
  if (running) {
    try {
      const host = ClusterClients.load({kubeconfig: state.kubeconfig}, requestTimeoutMs).forContext('host')
      const found = await host.findCustomObject<KubeSphereCluster>(ClusterResource, state.cluster)
      cluster.conditions = (found?.status?.conditions ?? []).map((condition) => ({
        type: condition.type,
        status: condition.status,
        ...(condition.message === undefined ? {} : {message: condition.message}),
      }))
      if (found === undefined) cluster.error = 'not on the host (yet)'
    } catch (error) {
      cluster.error = error instanceof Error ? error.message : String(error)
    }
  } else {
    cluster.error = 'the playground does not run'
  }
  return {
    dir,
    pid: state.pid,
    running,
    edition: state.edition,
    phase: state.phase,
    startedAt: state.startedAt,
    kubeconfig: state.kubeconfig,
    processes: state.processes.map((child) => ({...child, running: running && isAlive(child.pid)})),
    cluster,
  }
}

export function renderPlaygroundStatus(status: PlaygroundStatus): string {
  const lines = [
    `playground in ${status.dir}: ${status.running ? (status.phase === 'ready' ? 'running' : 'starting') : 'NOT RUNNING'} (pid ${String(status.pid)}, KubeSphere ${status.edition === '3' ? '3.4' : '4.1'}, since ${status.startedAt})`,
    `kubeconfig: ${status.kubeconfig} (contexts host, member, member-via-tower)`,
    '',
  ]
  const rows = [['PROCESS', 'PID', 'STATE', 'ADDRESS']].concat(
    status.processes.map((child) => [
      child.name,
      String(child.pid),
      child.running ? 'running' : 'gone',
      child.address,
    ]),
  )
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0))) ?? []
  for (const row of rows)
    lines.push(
      row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join('  ')
        .trimEnd(),
    )
  lines.push('', `cluster "${status.cluster.name}" on the host:`)
  if (status.cluster.error !== undefined) lines.push(`  ${status.cluster.error}`)
  for (const condition of status.cluster.conditions) {
    lines.push(
      `  ${condition.type}=${condition.status}${condition.message === undefined ? '' : `  ${condition.message}`}`,
    )
  }
  return `${lines.join('\n')}\n`
}
