import {X509Certificate} from 'node:crypto'

import {load} from 'js-yaml'

import {renewalTime} from '../../../pki/certificates.js'
import type {ClientIdentity} from '../../shared/identity.js'
import {certificateClaims} from '../client-binding.js'

/** What the proxy needs to know of a kubeconfig it issued into a Cluster to tell when to issue it again. */
export interface IssuedKubeconfig {
  server: string
  caPem: string
  /** Two thirds of its client certificate's validity. */
  renewAt: Date
  /** The cluster its client certificate is bound to; undefined when none (issued before ksctl bound them). */
  boundCluster: string | undefined
  identity: ClientIdentity
}

/** The server, CA and renewal time of an issued kubeconfig (base64, as in the Cluster); undefined when unreadable. */
export function readIssuedKubeconfig(base64: string): IssuedKubeconfig | undefined {
  try {
    const document = load(Buffer.from(base64, 'base64').toString('utf8')) as {
      clusters?: {cluster?: {server?: unknown; 'certificate-authority-data'?: unknown}}[]
      users?: {user?: {'client-certificate-data'?: unknown}}[]
    }
    const cluster = document.clusters?.[0]?.cluster
    const certificate = document.users?.[0]?.user?.['client-certificate-data']
    const caData = cluster?.['certificate-authority-data']
    if (
      typeof cluster?.server !== 'string' ||
      typeof certificate !== 'string' ||
      typeof caData !== 'string'
    ) {
      return undefined
    }
    const certPem = Buffer.from(certificate, 'base64').toString('utf8')
    const claims = certificateClaims(new X509Certificate(certPem).toLegacyObject())
    return {
      server: cluster.server,
      caPem: Buffer.from(caData, 'base64').toString('utf8'),
      renewAt: renewalTime(certPem),
      boundCluster: claims.boundCluster,
      identity: claims.identity,
    }
  } catch {
    return undefined
  }
}

/**
 * Why an issued kubeconfig must be issued again, or undefined when it is good: it cannot be read, it names another
 * server (Service mc-NAME was made again with another ClusterIP), the proxy CA changed (rotation), it is not bound
 * to its cluster (issued before ksctl bound credentials to one cluster: the front ends refuse it) or does not carry
 * the identity wanted, or two thirds of its validity have passed.
 */
export function kubeconfigRenewalReason(
  issued: IssuedKubeconfig | undefined,
  wanted: {server: string; caPem: string; cluster: string; identity: ClientIdentity},
  now: Date,
): string | undefined {
  if (issued === undefined) return 'it cannot be read'
  if (issued.caPem.trim() !== wanted.caPem.trim()) return 'the proxy CA changed'
  if (issued.server !== wanted.server) return 'its server address changed'
  if (issued.boundCluster !== wanted.cluster) return 'not bound to its cluster'
  if (!sameIdentity(issued.identity, wanted.identity))
    return 'its identity is not the one KubeSphere is given'
  if (now.getTime() >= issued.renewAt.getTime()) return 'two thirds of its validity have passed'
  return undefined
}

function sameIdentity(a: ClientIdentity, b: ClientIdentity): boolean {
  return a.user === b.user && JSON.stringify([...a.groups].sort()) === JSON.stringify([...b.groups].sort())
}
