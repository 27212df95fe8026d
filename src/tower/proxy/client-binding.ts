import {issueCertificate, type CertificateAndKey} from '../../pki/certificates.js'
import type {ClientIdentity} from '../shared/identity.js'

/**
 * A client certificate names the one cluster it is for in a URI subject alternative name, `urn:ksctl:cluster:NAME`.
 * A SAN rather than the subject: kube-apiserver and client-go read a client certificate's CN and O as its user and
 * groups, and ksctl forwards them to the member as such, so the binding must not take one of them; URI SANs mean
 * nothing to either (SPIFFE uses them the same way, for an identity beyond the subject). It is signed with the rest
 * of the certificate, so no one without the proxy CA's key can change it, and Node shows it on the peer certificate
 * without a parser of ours.
 */
const bindingPrefix = 'urn:ksctl:cluster:'
/** A cluster's name is a DNS label (as the path-routed front end and KubeSphere's Cluster names require). */
const clusterName = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

export function clusterBindingUri(cluster: string): string {
  return `${bindingPrefix}${cluster}`
}

/** What a client certificate says: who (CN, O) and, when it names exactly one, the cluster it is bound to. */
export interface ClientCertificateClaims {
  identity: ClientIdentity
  /** Undefined when the certificate names no cluster, or several. */
  boundCluster: string | undefined
}

/** The parts of Node's legacy certificate object (`getPeerCertificate()`, `X509Certificate.toLegacyObject()`) read here. */
export interface LegacyCertificate {
  /** Node types both as strings, but gives an array for a name the certificate repeats (several O). */
  subject?: {CN?: string | string[]; O?: string | string[]} | null
  subjectaltname?: string | undefined
}

export function certificateClaims(certificate: LegacyCertificate): ClientCertificateClaims {
  const subject = certificate.subject ?? {}
  const listed = (value: string | string[] | undefined): string[] =>
    value === undefined ? [] : Array.isArray(value) ? value : [value]
  const clusters = subjectAltNames(certificate.subjectaltname)
    .filter((name) => name.startsWith('URI:'))
    .map((name) => name.slice('URI:'.length))
    .filter((uri) => uri.startsWith(bindingPrefix))
    .map((uri) => uri.slice(bindingPrefix.length))
  const [cluster] = clusters
  return {
    identity: {user: listed(subject.CN)[0] ?? '', groups: listed(subject.O)},
    boundCluster:
      clusters.length === 1 && cluster !== undefined && clusterName.test(cluster) ? cluster : undefined,
  }
}

/**
 * Node's `subjectaltname`: `TYPE:value` entries joined by ", ", where a value holding a character that could be
 * misread (a comma, a quote) is written as a JSON string.
 */
function subjectAltNames(text: string | undefined): string[] {
  const names: string[] = []
  let rest = text ?? ''
  while (rest !== '') {
    const colon = rest.indexOf(':')
    if (colon < 0) break
    const type = rest.slice(0, colon)
    let value: string
    let after: string
    if (rest[colon + 1] === '"') {
      const end = closingQuote(rest, colon + 1)
      value = JSON.parse(rest.slice(colon + 1, end + 1)) as string
      after = rest.slice(end + 1)
    } else {
      const comma = rest.indexOf(', ', colon)
      value = comma < 0 ? rest.slice(colon + 1) : rest.slice(colon + 1, comma)
      after = comma < 0 ? '' : rest.slice(comma)
    }
    names.push(`${type}:${value}`)
    rest = after.startsWith(', ') ? after.slice(2) : ''
  }
  return names
}

function closingQuote(text: string, opening: number): number {
  for (let index = opening + 1; index < text.length; index++) {
    if (text[index] === '\\') index++
    else if (text[index] === '"') return index
  }
  return text.length - 1
}

export interface ClientCertificateOptions {
  /** The one cluster the certificate may reach. */
  cluster: string
  identity: ClientIdentity
  validityDays?: number
  /** Test hook: a certificate valid only in the past. */
  notBefore?: Date
  notAfter?: Date
}

/** A client certificate of the proxy CA for `identity`, bound to `cluster`. */
export function issueClientCertificate(
  ca: CertificateAndKey,
  options: ClientCertificateOptions,
): Promise<CertificateAndKey> {
  return issueCertificate(ca, {
    commonName: options.identity.user,
    organizations: options.identity.groups,
    uris: [clusterBindingUri(options.cluster)],
    usage: 'client',
    validityDays: options.validityDays ?? 365,
    ...(options.notBefore !== undefined && {notBefore: options.notBefore}),
    ...(options.notAfter !== undefined && {notAfter: options.notAfter}),
  })
}
