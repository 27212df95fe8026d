import {existsSync} from 'node:fs'
import {mkdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {dump} from 'js-yaml'

import {invalidInput} from '../../errors.js'
import {createCertificateAuthority, type CertificateAndKey} from '../../pki/certificates.js'
import {writePrivateFile} from '../../private-file.js'
import type {ClientIdentity} from '../shared/identity.js'
import {issueClientCertificate} from './client-binding.js'

export const caCertFile = 'ca.crt'
export const caKeyFile = 'ca.key'

export interface ProxyCaSource {
  caCert?: string
  caKey?: string
  stateDir?: string
}

/**
 * The proxy CA: from --ca-cert/--ca-key, else from --state-dir, created there on first start. ksctl never ships
 * a CA key, so two installations never share one (unlike Tower's committed ca.key).
 */
export async function loadProxyCa(
  source: ProxyCaSource,
  createIfAbsent: boolean,
): Promise<CertificateAndKey> {
  if (source.caCert !== undefined || source.caKey !== undefined) {
    if (source.caCert === undefined || source.caKey === undefined) {
      throw invalidInput('--ca-cert and --ca-key go together')
    }
    return {
      certPem: await readText(source.caCert, '--ca-cert'),
      keyPem: await readText(source.caKey, '--ca-key'),
    }
  }
  if (source.stateDir === undefined) throw invalidInput('give --ca-cert and --ca-key, or --state-dir')
  const certPath = join(source.stateDir, caCertFile)
  const keyPath = join(source.stateDir, caKeyFile)
  if (existsSync(certPath) && existsSync(keyPath)) {
    return {certPem: await readText(certPath, '--state-dir'), keyPem: await readText(keyPath, '--state-dir')}
  }
  if (!createIfAbsent)
    throw invalidInput(`no proxy CA in --state-dir ${source.stateDir}: start the proxy first`)
  await mkdir(source.stateDir, {recursive: true, mode: 0o700})
  const ca = await createCertificateAuthority({commonName: 'ksctl-tower-proxy-ca', validityDays: 3650})
  writePrivateFile(keyPath, ca.keyPem, '--state-dir')
  writePrivateFile(certPath, ca.certPem, '--state-dir')
  return ca
}

async function readText(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch {
    throw invalidInput(`cannot read ${flag} ${path}`)
  }
}

export interface IssueKubeconfigOptions {
  ca: CertificateAndKey
  /** The cluster, as named in the kubeconfig and in the path-routed URL; the certificate is bound to it. */
  cluster: string
  /** Front-end URL: https://HOST:PORT/clusters/NAME (path-routed) or https://HOST:PORT (per-cluster port). */
  server: string
  /** Who the member sees (CN and O of the certificate); {@link defaultIdentity} when not given. */
  identity?: ClientIdentity
  validityDays?: number
  /** Test hook: issue a certificate valid only in the past. */
  notAfter?: Date
  notBefore?: Date
}

/** The identity `ksctl tower issue-kubeconfig` puts in a certificate unless told otherwise. */
export const defaultIdentity: ClientIdentity = {user: 'ksctl-admin', groups: []}

/**
 * A kubeconfig for a host client of the proxy: a client certificate signed by the proxy CA (which the front ends
 * verify), bound to the cluster and naming the identity the member authorizes, and the proxy CA as the server's
 * CA. It holds no member credential: the agent adds its own in the member, and impersonates the identity.
 */
export async function issueKubeconfig(options: IssueKubeconfigOptions): Promise<string> {
  const identity = options.identity ?? defaultIdentity
  const client = await issueClientCertificate(options.ca, {
    cluster: options.cluster,
    identity,
    ...(options.validityDays !== undefined && {validityDays: options.validityDays}),
    ...(options.notBefore !== undefined && {notBefore: options.notBefore}),
    ...(options.notAfter !== undefined && {notAfter: options.notAfter}),
  })
  const base64 = (text: string): string => Buffer.from(text).toString('base64')
  const user = `${options.cluster}-${identity.user}`
  return dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: options.cluster,
        cluster: {server: options.server, 'certificate-authority-data': base64(options.ca.certPem)},
      },
    ],
    users: [
      {
        name: user,
        user: {'client-certificate-data': base64(client.certPem), 'client-key-data': base64(client.keyPem)},
      },
    ],
    contexts: [{name: options.cluster, context: {cluster: options.cluster, user}}],
    'current-context': options.cluster,
  })
}
