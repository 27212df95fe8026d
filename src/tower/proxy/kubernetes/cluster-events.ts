import {randomBytes} from 'node:crypto'
import os from 'node:os'

import {CoreV1Api, PatchStrategy, setHeaderOptions, type CoreV1Event} from '@kubernetes/client-node'

import type {ClusterClient} from '../../../k8s/cluster-client.js'
import {isNotFound} from '../../../k8s/api-errors.js'
import type {KubeSphereCluster} from '../../../kubesphere/cluster-object.js'
import type {Logger} from '../../../log.js'

/** Events of cluster-scoped objects live in `default`, as client-go's recorder puts them. */
const EVENT_NAMESPACE = 'default'
const COMPONENT = 'ksctl-tower-proxy'
/** A failure that repeats is written at most this often; the count in between is kept and written with it. */
const REPEAT_WRITE_MS = 60_000

interface Recorded {
  cluster: string
  name: string
  count: number
  writtenAt: number
}

/**
 * Warning Events about KubeSphere Clusters (`kubectl describe cluster NAME` shows them), as a controller reports a
 * failed reconcile: one Event per Cluster, reason and message, whose count grows while the failure repeats
 * (written at most once a minute, like client-go's event correlator). An Event can be written even when the
 * Cluster itself refuses writes, which is one of the failures it reports. Failing to write one is logged, never
 * thrown: it must not stop the reconcile it reports on.
 */
export class ClusterEvents {
  private readonly core: CoreV1Api
  private readonly recorded = new Map<string, Recorded>()

  constructor(
    private readonly client: ClusterClient,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.core = client.config.makeApiClient(CoreV1Api)
  }

  async warn(cluster: KubeSphereCluster, reason: string, message: string): Promise<void> {
    const name = cluster.metadata?.name ?? ''
    const key = JSON.stringify([name, cluster.metadata?.uid, reason, message])
    const now = this.now()
    const previous = this.recorded.get(key)
    try {
      if (previous !== undefined) {
        previous.count++
        if (now.getTime() - previous.writtenAt < REPEAT_WRITE_MS) return
        // Events expire (an hour by default): a failure that outlived its Event gets a new one.
        if (await this.update(previous, now)) return
      }
      const created = await this.create(cluster, reason, message, now, previous?.count ?? 1)
      this.recorded.set(key, created)
    } catch (error) {
      this.log.warn('cannot record an event on a Cluster', {
        cluster: name,
        reason: error instanceof Error ? error.message : String(error),
      })
    }
  }

  /** The Cluster reconciled: its next failure starts a new Event. */
  resolved(cluster: string): void {
    for (const [key, recorded] of this.recorded) if (recorded.cluster === cluster) this.recorded.delete(key)
  }

  private async create(
    cluster: KubeSphereCluster,
    reason: string,
    message: string,
    now: Date,
    count: number,
  ): Promise<Recorded> {
    const clusterName = cluster.metadata?.name ?? ''
    const name = `${clusterName}.${now.getTime().toString(16)}${randomBytes(2).toString('hex')}`
    const event: CoreV1Event = {
      metadata: {name, namespace: EVENT_NAMESPACE},
      involvedObject: {
        apiVersion: cluster.apiVersion ?? 'cluster.kubesphere.io/v1alpha1',
        kind: 'Cluster',
        name: clusterName,
        ...(cluster.metadata?.uid !== undefined && {uid: cluster.metadata.uid}),
      },
      reason,
      message,
      type: 'Warning',
      count,
      firstTimestamp: now,
      lastTimestamp: now,
      source: {component: COMPONENT},
      reportingComponent: COMPONENT,
      reportingInstance: os.hostname(),
    }
    await this.client.call(
      {verb: 'create', object: {resource: 'events', name, namespace: EVENT_NAMESPACE}},
      () => this.core.createNamespacedEvent({namespace: EVENT_NAMESPACE, body: event}),
    )
    return {cluster: clusterName, name, count, writtenAt: now.getTime()}
  }

  /** Writes the count; false when the Event is gone. */
  private async update(recorded: Recorded, now: Date): Promise<boolean> {
    try {
      await this.client.call(
        {verb: 'patch', object: {resource: 'events', name: recorded.name, namespace: EVENT_NAMESPACE}},
        () =>
          this.core.patchNamespacedEvent(
            {
              name: recorded.name,
              namespace: EVENT_NAMESPACE,
              body: {count: recorded.count, lastTimestamp: now.toISOString()},
            },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          ),
      )
      recorded.writtenAt = now.getTime()
      return true
    } catch (error) {
      if (isNotFound(error)) return false
      throw error
    }
  }
}
