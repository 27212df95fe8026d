import {load} from 'js-yaml'

import {renewalTime} from '../../../pki/certificates.js'

/** What the proxy needs to know of a kubeconfig it issued into a Cluster to tell when to issue it again. */
export interface IssuedKubeconfig {
  server: string
  caPem: string
  /** Two thirds of its client certificate's validity. */
  renewAt: Date
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
    return {
      server: cluster.server,
      caPem: Buffer.from(caData, 'base64').toString('utf8'),
      renewAt: renewalTime(Buffer.from(certificate, 'base64').toString('utf8')),
    }
  } catch {
    return undefined
  }
}

/**
 * Why an issued kubeconfig must be issued again, or undefined when it is good: it cannot be read, it names another
 * server (Service mc-NAME was made again with another ClusterIP), the proxy CA changed (rotation), or two thirds of
 * its validity have passed.
 */
export function kubeconfigRenewalReason(
  issued: IssuedKubeconfig | undefined,
  wanted: {server: string; caPem: string},
  now: Date,
): string | undefined {
  if (issued === undefined) return 'it cannot be read'
  if (issued.caPem.trim() !== wanted.caPem.trim()) return 'the proxy CA changed'
  if (issued.server !== wanted.server) return 'its server address changed'
  if (now.getTime() >= issued.renewAt.getTime()) return 'two thirds of its validity have passed'
  return undefined
}
