import assert from 'node:assert/strict'
import {X509Certificate} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import path from 'node:path'

import {load} from 'js-yaml'

import TowerAgentCommand from '../../../commands/tower/agent.js'
import TowerIssueKubeconfig, {type IssueKubeconfigResult} from '../../../commands/tower/issue-kubeconfig.js'
import {KsctlError} from '../../../src/errors.js'
import {createCertificateAuthority} from '../../../src/pki/certificates.js'
import {checkPlainLink, normalizeProxyUrl} from '../../../src/tower/agent/agent.js'
import {certificateClaims} from '../../../src/tower/proxy/client-binding.js'
import {runCommand} from '../../helpers/run-command.js'
import {tempDir} from './harness.js'

describe('tower commands: identities in issued kubeconfigs, plain ws:// only when both sides say so', function () {
  this.timeout(20_000)

  async function caFiles(): Promise<{dir: string; flags: string[]}> {
    const dir = await tempDir()
    const ca = await createCertificateAuthority({commonName: 'issue-test-ca', validityDays: 1})
    await writeFile(path.join(dir, 'ca.crt'), ca.certPem)
    await writeFile(path.join(dir, 'ca.key'), ca.keyPem, {mode: 0o600})
    return {dir, flags: ['--ca-cert', path.join(dir, 'ca.crt'), '--ca-key', path.join(dir, 'ca.key')]}
  }

  it('issue-kubeconfig puts --user and --group in the certificate and binds it to --cluster', async () => {
    const {dir, flags} = await caFiles()
    const file = path.join(dir, 'alice.kubeconfig')
    const outcome = await runCommand<IssueKubeconfigResult>(TowerIssueKubeconfig, [
      ...['--cluster', 'member1', '--server', 'https://proxy.example.com:6443/clusters/member1'],
      ...['--user', 'alice', '--group', 'dev', '--group', 'ops', '-f', file, ...flags],
    ])
    assert.equal(outcome.exitCode, 0, outcome.stderr)
    assert.deepEqual(outcome.result, {
      cluster: 'member1',
      server: 'https://proxy.example.com:6443/clusters/member1',
      user: 'alice',
      groups: ['dev', 'ops'],
      file,
    })
    const document = load(await readFile(file, 'utf8')) as {
      users: {user: {'client-certificate-data': string}}[]
    }
    const certificate = new X509Certificate(
      Buffer.from(document.users[0]?.user['client-certificate-data'] ?? '', 'base64'),
    )
    assert.deepEqual(certificateClaims(certificate.toLegacyObject()), {
      identity: {user: 'alice', groups: ['dev', 'ops']},
      boundCluster: 'member1',
    })
  })

  it('issue-kubeconfig refuses a --server of another cluster and an identity it cannot forward, writing nothing', async () => {
    const {dir, flags} = await caFiles()
    const file = path.join(dir, 'refused.kubeconfig')
    const otherServer = await runCommand(TowerIssueKubeconfig, [
      ...['--cluster', 'member1', '--server', 'https://proxy.example.com:6443/clusters/member2', '-f', file],
      ...flags,
    ])
    assert.equal(otherServer.exitCode, 2)
    assert.match(
      otherServer.stderr,
      /--server names cluster member2 but --cluster is member1: the certificate is bound to --cluster/,
    )
    assert.match(otherServer.stderr, /use --server https:\/\/proxy\.example\.com:6443\/clusters\/member1/)
    const serviceAccount = await runCommand(TowerIssueKubeconfig, [
      ...['--cluster', 'member1', '--server', 'https://proxy.example.com:6443/clusters/member1'],
      ...['--user', 'system:serviceaccount:default:app', '-f', file, ...flags],
    ])
    assert.equal(serviceAccount.exitCode, 2)
    assert.match(serviceAccount.stderr, /must not be a service account's/)
    await assert.rejects(readFile(file), /ENOENT/)
  })

  it('the agent takes a plain http:// (ws://) proxy only with --insecure-plain, and the flag only with one', () => {
    const plain = normalizeProxyUrl('http://tower.example.com:8080')
    assert.throws(
      () => checkPlainLink(plain, false),
      (error: unknown) =>
        error instanceof KsctlError &&
        /--proxy-server http:\/\/tower\.example\.com:8080 is plain ws:\/\/: the tunnel token and every request would cross the network unencrypted/.test(
          error.message,
        ) &&
        error.suggestions.some((line) =>
          /start both ksctl tower proxy and ksctl tower agent with --insecure-plain/.test(line),
        ),
    )
    checkPlainLink(plain, true)
    checkPlainLink(normalizeProxyUrl('https://tower.example.com'), false)
    assert.throws(
      () => checkPlainLink(normalizeProxyUrl('https://tower.example.com'), true),
      /--insecure-plain is for an http:\/\/ \(ws:\/\/\) --proxy-server/,
    )
  })

  it('ksctl tower agent exits 2 on an http:// --proxy-server without --insecure-plain, before it connects', async () => {
    const outcome = await runCommand(TowerAgentCommand, [
      ...['--name', 'member1', '--token', 'a-token-of-the-test-0123456789'],
      ...['--proxy-server', 'http://127.0.0.1:9', '--kubernetes-service', '127.0.0.1:1'],
    ])
    assert.equal(outcome.exitCode, 2)
    assert.match(outcome.stderr, /is plain ws:\/\//)
    assert.ok(!outcome.stderr.includes('a-token-of-the-test'))
  })
})
