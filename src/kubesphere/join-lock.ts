import {hostname} from 'node:os'

import {CoordinationV1Api, V1MicroTime, type V1Lease} from '@kubernetes/client-node'

import {KsctlError, type ObjectRef} from '../errors.js'
import {isConflict, isNotFound} from '../k8s/api-errors.js'
import {withoutName, type PlannedWrite} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import type {DryRun} from '../k8s/dry-run.js'
import {log} from '../log.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'

/**
 * A lock on the host, one per member, that makes two joins of one member under different names impossible:
 * a coordination.k8s.io Lease named after the member's kube-system UID, taken before the join's first write
 * and released once the host's Cluster exists (which then records the member's UID, so that later joins are
 * refused by the registration check). Creating the Lease is atomic: a second join gets 409 and names the
 * join that holds it. A holder that crashed keeps the Lease until it expires; a join under the holder's own
 * name takes it over at once, since it registers the same Cluster.
 */
export interface JoinLock {
  /** The writes the lock makes, for the access review. */
  writes: PlannedWrite[]
  /** Takes the lock, then runs `recheck` (the registration check), releasing the lock if that fails. */
  acquire(recheck: () => Promise<unknown>): Promise<void>
  /** Just before the Cluster is written: renews the Lease, failing if another join took it over. */
  confirm(): Promise<void>
  /** Gives the lock back; a failure to do so is a warning (the Lease expires). */
  release(): Promise<void>
}

export interface JoinLockTarget {
  /** The Cluster name this join registers. */
  name: string
  memberUid: string
  memberContext: string
}

const CLUSTER_NAME_ANNOTATION = 'ksctl.io/cluster-name'
const MEMBER_CONTEXT_ANNOTATION = 'ksctl.io/member-context'
const MIN_DURATION_SECONDS = 60
const ACQUIRE_ATTEMPTS = 3

export function joinLockName(memberUid: string): string {
  return `ksctl-join-${memberUid}`
}

/**
 * The lock of a join. It lasts twice the request time-out (at least a minute): it is renewed right before
 * the one request it must outlive, the Cluster's apply. A client dry run takes no lock; a server dry run
 * sends its create as a dry run, so RBAC, admission and a lock held by another join are all checked.
 */
export function joinLock(
  host: ClusterClient,
  target: JoinLockTarget,
  options: {dryRun: DryRun; requestTimeoutMs: number},
): JoinLock {
  const leases = host.config.makeApiClient(CoordinationV1Api)
  const namespace = KUBESPHERE_NAMESPACE
  const name = joinLockName(target.memberUid)
  const ref: ObjectRef = {resource: 'leases', group: 'coordination.k8s.io', namespace, name}
  const collection = withoutName(ref)
  const durationSeconds = Math.max(MIN_DURATION_SECONDS, Math.ceil((2 * options.requestTimeoutMs) / 1000))
  const dryRun = options.dryRun === 'server' ? {dryRun: 'All'} : {}
  let held: V1Lease | undefined

  /** The Lease as this join holds it: new, taken over from `previous`, or `previous` renewed. */
  const ours = (previous: V1Lease | undefined, renewing = false): V1Lease => {
    const now = new V1MicroTime()
    const resourceVersion = previous?.metadata?.resourceVersion
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name,
        namespace,
        labels: {'app.kubernetes.io/managed-by': 'ksctl'},
        annotations: {
          [CLUSTER_NAME_ANNOTATION]: target.name,
          [MEMBER_CONTEXT_ANNOTATION]: target.memberContext,
        },
        ...(resourceVersion === undefined ? {} : {resourceVersion}),
      },
      spec: {
        holderIdentity: `${hostname()}/${process.pid}/${target.name}`,
        leaseDurationSeconds: durationSeconds,
        acquireTime: renewing ? (previous?.spec?.acquireTime ?? now) : now,
        renewTime: now,
        leaseTransitions:
          (previous?.spec?.leaseTransitions ?? 0) + (previous === undefined || renewing ? 0 : 1),
      },
    }
  }
  const create = () =>
    host.call({verb: 'create', object: collection}, () =>
      leases.createNamespacedLease({namespace, body: ours(undefined), ...dryRun}),
    )
  const replace = (previous: V1Lease, renewing = false) =>
    host.call({verb: 'update', object: ref}, () =>
      leases.replaceNamespacedLease({namespace, name, body: ours(previous, renewing), ...dryRun}),
    )
  const read = () =>
    host.find({verb: 'get', object: ref}, () => leases.readNamespacedLease({namespace, name}))

  /**
   * Creates the Lease, or takes over an expired one or one of the same name. A Lease held by another join
   * is an error naming it, unless the member turns out to be registered already: then the registration
   * check names the Cluster that won, which a Lease held by a later join would not.
   */
  const take = async (recheck: () => Promise<unknown>): Promise<V1Lease> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await create()
      } catch (error) {
        if (!isConflict(error) || attempt >= ACQUIRE_ATTEMPTS) throw error
      }
      const existing = await read()
      if (existing === undefined) continue
      if (existing.metadata?.annotations?.[CLUSTER_NAME_ANNOTATION] !== target.name && !expired(existing)) {
        await recheck()
        throw heldByAnother(host, target, existing)
      }
      try {
        return await replace(existing)
      } catch (error) {
        if (!isConflict(error) || attempt >= ACQUIRE_ATTEMPTS) throw error
      }
    }
  }

  const release = async (): Promise<void> => {
    const lease = held
    held = undefined
    if (lease === undefined || options.dryRun !== false) return
    try {
      await host.find({verb: 'delete', object: ref}, () =>
        leases.deleteNamespacedLease({
          namespace,
          name,
          body: {preconditions: {uid: lease.metadata?.uid, resourceVersion: lease.metadata?.resourceVersion}},
        }),
      )
    } catch (error) {
      if (isConflict(error)) return
      log.warn(
        `could not release the join lock, lease ${namespace}/${name} in context "${host.context}" (it expires ` +
          `within ${durationSeconds}s): ${error instanceof Error ? error.message : String(error)}`,
      )
    }
  }

  return {
    writes: [
      {client: host, verb: 'create', object: collection},
      {client: host, verb: 'update', object: ref},
      {client: host, verb: 'delete', object: ref},
    ],
    async acquire(recheck) {
      if (options.dryRun === 'client') {
        await recheck()
        return
      }
      held = await take(recheck)
      try {
        await recheck()
      } catch (error) {
        await release()
        throw error
      }
    },
    async confirm() {
      if (held === undefined || options.dryRun !== false) return
      try {
        held = await replace(held, true)
      } catch (error) {
        if (!isConflict(error) && !isNotFound(error)) throw error
        const now = await read()
        held = undefined
        throw now === undefined ? lost(host, target) : heldByAnother(host, target, now)
      }
    },
    release,
  }
}

function expired(lease: V1Lease): boolean {
  const renewed = lease.spec?.renewTime ?? lease.spec?.acquireTime ?? lease.metadata?.creationTimestamp
  const duration = lease.spec?.leaseDurationSeconds
  if (renewed === undefined || duration === undefined) return false
  return new Date(renewed).getTime() + duration * 1000 < Date.now()
}

function heldByAnother(host: ClusterClient, target: JoinLockTarget, lease: V1Lease): KsctlError {
  const holder = lease.metadata?.annotations?.[CLUSTER_NAME_ANNOTATION] ?? '(unknown)'
  const since = lease.spec?.acquireTime ?? lease.metadata?.creationTimestamp
  const renewed = lease.spec?.renewTime ?? since
  const expires =
    renewed === undefined || lease.spec?.leaseDurationSeconds === undefined
      ? undefined
      : new Date(new Date(renewed).getTime() + lease.spec.leaseDurationSeconds * 1000)
  const ref = `lease ${KUBESPHERE_NAMESPACE}/${lease.metadata?.name ?? joinLockName(target.memberUid)}`
  return new KsctlError(
    `the member of context "${target.memberContext}" is being joined to this host as "${holder}" by another ` +
      `ksctl run (${ref} in context "${host.context}"${since === undefined ? '' : `, since ${new Date(since).toISOString()}`}): ` +
      'nothing was changed',
    {
      code: 'CONFLICT',
      context: host.context,
      object: {
        resource: 'leases',
        group: 'coordination.k8s.io',
        namespace: KUBESPHERE_NAMESPACE,
        name: joinLockName(target.memberUid),
      },
      suggestions: [
        `a member joins a host once: let that join finish, then look: ksctl status --context ${host.context}`,
        `if that run stopped without finishing, run it again under its name (it takes the lock over): ksctl member join ${holder} ` +
          `--host-context ${host.context} --member-context ${target.memberContext}` +
          (expires === undefined ? '' : `; its lock expires at ${expires.toISOString()}`),
      ],
    },
  )
}

function lost(host: ClusterClient, target: JoinLockTarget): KsctlError {
  return new KsctlError(
    `the join lock of the member of context "${target.memberContext}" was removed in context "${host.context}" ` +
      `before cluster "${target.name}" was registered`,
    {
      code: 'CONFLICT',
      context: host.context,
      suggestions: ['run the same command again: it continues from here'],
    },
  )
}
