import assert from 'node:assert/strict'

import HostInit from '../../../commands/host/init.js'
import MemberJoin, {type MemberJoinOutput} from '../../../commands/member/join.js'
import type {ErrorJson} from '../../../src/cli/base-command.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {until} from '../../helpers/ksctl-running.js'
import {KubeSphereStandIn} from '../../helpers/kubesphere-standin.js'
import {runCommand} from '../../helpers/run-command.js'

const clusterPath = '/apis/cluster.kubesphere.io/v1alpha1/clusters/member1'
const agentPath = '/apis/apps/v1/namespaces/kubesphere-system/deployments/cluster-agent'

describe('Ctrl-C or SIGTERM during a wait', () => {
  let clusters: FakeClusters
  let standIn: KubeSphereStandIn | undefined

  // oclif names a command by its manifest id; a class run directly in a test has none and would be called
  // "memberjoin", so the ids are given as the CLI's loader gives them.
  before(() => {
    MemberJoin.id = 'member:join'
    HostInit.id = 'host:init'
  })

  beforeEach(async () => {
    clusters = await startFakeClusters()
  })

  afterEach(async () => {
    await standIn?.stop()
    standIn = undefined
    await clusters.stop()
  })

  /** Resolves once the command has polled the host's Cluster `times` more times after applying the agent. */
  const waiting = async (times = 2) => {
    await until(() => clusters.member.get(agentPath) !== undefined, 'the agent to be applied')
    const polls = () =>
      clusters.host.requests.filter((r) => r.method === 'GET' && r.path === clusterPath).length
    const before = polls()
    await until(() => polls() >= before + times, 'the command to poll the Cluster')
  }
  const join = ['member1', '--host-context', 'host', '--member-context', 'member', '--apply', '--wait']
  const joinMember = (...extra: string[]) =>
    runCommand<MemberJoinOutput>(MemberJoin, [...join, '--kubeconfig', clusters.kubeconfigPath, ...extra])

  it('member join: reports what it changed and the command that continues, exits 130; the same command finishes', async () => {
    seedFake(clusters.host, 'ks34-host')
    seedFake(clusters.member, 'ks34-none')
    standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', 'member', {agentConnects: false}).start()

    const first = joinMember()
    await waiting()
    process.emit('SIGINT', 'SIGINT')
    const interrupted = await first
    assert.equal(interrupted.exitCode, 130, interrupted.stderr)
    assert.match(
      interrupted.stderr,
      /^error: interrupted by SIGINT while waiting for cluster "member1" to become Ready \(waited \d+s of 15m\)$/m,
    )
    const changed = interrupted.stderr.slice(interrupted.stderr.indexOf('changed so far (kept):'))
    assert.match(
      changed,
      /^ {2}- updated clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer in context "member"$/m,
    )
    assert.match(changed, /^ {2}- patched clusters\.cluster\.kubesphere\.io member1 in context "host"$/m)
    assert.match(changed, /^ {2}- patched deployments kubesphere-system\/cluster-agent in context "member"$/m)
    assert.ok(
      interrupted.stderr.includes(
        `to continue, run the same command again: ksctl member join ${join.join(' ')} --kubeconfig ${clusters.kubeconfigPath}`,
      ),
      interrupted.stderr,
    )

    await standIn.stop()
    standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', 'member').start()
    const finished = await joinMember()
    assert.equal(finished.exitCode, 0, finished.stderr)
    assert.equal(finished.result?.ready, true)
  })

  it('host init: SIGTERM in the wait for the installer reports the same way, also as JSON', async () => {
    seedFake(clusters.host, 'ks34-none')
    const running = runCommand(HostInit, [
      '--kubeconfig',
      clusters.kubeconfigPath,
      '--context',
      'host',
      '--wait',
      '--json',
    ])
    const installerPolls = () =>
      clusters.host.requests.filter(
        (r) => r.method === 'GET' && r.path.endsWith('/clusterconfigurations/ks-installer'),
      ).length
    await until(() => clusters.host.writes().length > 0, 'the installer edit')
    const before = installerPolls()
    await until(() => installerPolls() > before, 'a poll of the installer')
    process.emit('SIGTERM', 'SIGTERM')
    const {stdout, exitCode} = await running
    assert.equal(exitCode, 130)
    const {error} = JSON.parse(stdout) as ErrorJson
    assert.equal(error.code, 'INTERRUPTED')
    assert.equal(error.exitCode, 130)
    assert.match(
      error.message,
      /^interrupted by SIGTERM while waiting for ks-installer to enable multicluster \(waited \d+s of 20m\)\n/,
    )
    assert.match(
      error.message,
      /\n {2}- updated clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer in context "host"$/,
    )
    assert.deepEqual(error.suggestions, [
      `every step is safe to repeat: to continue, run the same command again: ksctl host init --kubeconfig ${clusters.kubeconfigPath} --context host --wait --json`,
    ])
    assert.equal(process.listenerCount('SIGTERM'), 0, 'the handlers are gone with the command')
  })
})
