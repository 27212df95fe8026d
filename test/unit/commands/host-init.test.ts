import assert from 'node:assert/strict'

import HostInit from '../../../commands/host/init.js'
import type {HostInitResult} from '../../../src/kubesphere/host-init.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {runCommand} from '../../helpers/run-command.js'

const installerPath =
  '/apis/installer.kubesphere.io/v1alpha1/namespaces/kubesphere-system/clusterconfigurations/ks-installer'

describe('ksctl host init', () => {
  let clusters: FakeClusters

  beforeEach(async () => {
    clusters = await startFakeClusters()
  })

  afterEach(async () => {
    await clusters.stop()
  })

  const hostInit = (...argv: string[]) =>
    runCommand<HostInitResult>(HostInit, [
      '--kubeconfig',
      clusters.kubeconfigPath,
      '--context',
      'host',
      ...argv,
    ])
  const spec = () => clusters.host.get(installerPath)?.spec as Record<string, Record<string, unknown>>

  it('sets the host role and name on a 3.4 cluster, keeping every other spec field', async () => {
    seedFake(clusters.host, 'ks34-none')
    const before = spec()
    const {stdout, exitCode, result} = await hostInit('--name', 'beijing')
    assert.equal(exitCode, 0)
    assert.equal(result?.alreadyHost, false)
    const after = spec()
    assert.deepEqual(after.multicluster, {
      ...before.multicluster,
      clusterRole: 'host',
      hostClusterName: 'beijing',
    })
    assert.deepEqual({...after, multicluster: undefined}, {...before, multicluster: undefined})
    assert.match(
      stdout,
      /^changed host: clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer/m,
    )
    assert.match(stdout, /ks-installer is now installing the multicluster component/)
    assert.equal(clusters.member.requests.length, 0)
  })

  it('changes nothing when run again, and says so', async () => {
    seedFake(clusters.host, 'ks34-host')
    const {stdout, exitCode, result} = await hostInit()
    assert.equal(exitCode, 0)
    assert.equal(result?.alreadyHost, true)
    assert.equal(stdout, 'context host is already the KubeSphere host "host"; nothing to change\n')
    assert.deepEqual(clusters.host.writes(), [])
  })

  it('prints a diff and changes nothing with --dry-run', async () => {
    seedFake(clusters.host, 'ks34-none')
    const {stdout, exitCode, result} = await hostInit('--dry-run')
    assert.equal(exitCode, 0)
    assert.equal(result?.changes[0]?.changed, true)
    assert.match(stdout, /^- {4}clusterRole: none$/m)
    assert.match(stdout, /^\+ {4}clusterRole: host$/m)
    assert.match(stdout, /dry run: nothing was changed/)
    assert.deepEqual(clusters.host.writes(), [])
  })

  it('re-reads and retries when the installer writes the object at the same time', async () => {
    seedFake(clusters.host, 'ks34-none')
    clusters.host.failNext(
      'PUT',
      /ks-installer$/,
      409,
      'the object has been modified; please apply your changes to the latest version',
    )
    const {exitCode} = await hostInit()
    assert.equal(exitCode, 0)
    assert.equal((spec().multicluster as Record<string, unknown>).clusterRole, 'host')
    assert.equal(clusters.host.writes().length, 2)
  })

  it('waits for the installer with --wait and reports when multicluster is enabled', async () => {
    seedFake(clusters.host, 'ks34-none')
    const installer = setInterval(() => {
      const current = clusters.host.get(installerPath)
      if (
        (current?.spec as {multicluster?: {clusterRole?: string}}).multicluster?.clusterRole === 'host' &&
        current !== undefined
      ) {
        clusters.host.put(installerPath, {
          ...current,
          status: {...(current.status as object), multicluster: {status: 'enabled'}},
        })
        clearInterval(installer)
      }
    }, 50)
    const {stdout, stderr, exitCode, result} = await hostInit('--wait', '--timeout', '10s')
    clearInterval(installer)
    assert.equal(exitCode, 0)
    assert.equal(result?.multiclusterStatus, 'enabled')
    assert.match(stderr, /multicluster: enabled/)
    assert.match(stdout, /the host "host" is ready/)
  })

  /** The installer: once the role is host, the API server fails these GETs of it, then it reports enabled. */
  const installerAfterFailures = (failures: [status: number, message: string][]) => {
    const installer = setInterval(() => {
      const current = clusters.host.get(installerPath)
      if (
        current === undefined ||
        (current.spec as {multicluster?: {clusterRole?: string}}).multicluster?.clusterRole !== 'host'
      )
        return
      clearInterval(installer)
      for (const [status, message] of failures)
        clusters.host.failNext('GET', /\/ks-installer$/, status, message)
      clusters.host.put(installerPath, {
        ...current,
        status: {...(current.status as object), multicluster: {status: 'enabled'}},
      })
    }, 20)
    return () => clearInterval(installer)
  }

  it('keeps waiting through transient API server failures (5xx, 429), showing them, until the installer is done', async () => {
    seedFake(clusters.host, 'ks34-none')
    const stop = installerAfterFailures([
      [503, 'etcdserver: leader changed'],
      [429, 'storage is (re)initializing'],
      [500, 'etcdserver: request timed out'],
    ])
    const {stderr, exitCode, result} = await hostInit('--wait', '--timeout', '10s')
    stop()
    assert.equal(exitCode, 0, stderr)
    assert.equal(result?.multiclusterStatus, 'enabled')
    assert.match(stderr, /retrying after: .*\(HTTP 503\): etcdserver: leader changed$/m)
    assert.match(stderr, /retrying after: .*\(HTTP 429\): storage is \(re\)initializing$/m)
    assert.match(stderr, /^multicluster: enabled$/m)
  })

  it('ends the wait at once on a failure that retrying cannot fix (403)', async () => {
    seedFake(clusters.host, 'ks34-none')
    const stop = installerAfterFailures([[403, 'clusterconfigurations is forbidden']])
    const {stderr, exitCode} = await hostInit('--wait', '--timeout', '10s')
    stop()
    assert.equal(exitCode, 1)
    assert.match(stderr, /^error: forbidden: cannot get clusterconfigurations\.installer\.kubesphere\.io/m)
  })

  it('says how to read the installer logs when --wait times out', async () => {
    seedFake(clusters.host, 'ks34-none')
    const {stderr, exitCode} = await hostInit('--wait', '--timeout', '1s')
    assert.equal(exitCode, 1)
    assert.match(stderr, /ks-installer did not enable multicluster within 1s in context "host"/)
    assert.match(
      stderr,
      /kubectl --context host logs -n kubesphere-system -l 'app in \(ks-install, ks-installer\)' -f/,
    )
  })

  it('checks a 4.1 host without editing Helm-managed objects', async () => {
    seedFake(clusters.host, 'ks41-host')
    const {stdout, exitCode} = await hostInit()
    assert.equal(exitCode, 0)
    assert.match(stdout, /is the KubeSphere 4\.x host "host" with the tower extension installed/)
    assert.deepEqual(clusters.host.writes(), [])
  })

  it('reports what a 4.1 host lacks when the tower extension is missing', async () => {
    seedFake(clusters.host, 'ks41-host', {tower: 'none'})
    const {stderr, exitCode} = await hostInit()
    assert.equal(exitCode, 1)
    assert.match(stderr, /not ready as a host: the tower extension .* is not installed/)
    assert.match(stderr, /Extensions Center/)
    assert.deepEqual(clusters.host.writes(), [])
  })

  describe('bad input leaves the cluster unchanged', () => {
    const cases: [string, string[], (clusters: FakeClusters) => void, number, RegExp][] = [
      [
        'an invalid host name',
        ['--name', 'Bei_Jing'],
        (c) => seedFake(c.host, 'ks34-none'),
        2,
        /--name "Bei_Jing" is not a valid host cluster name/,
      ],
      [
        'a name starting with a dot',
        ['--name', '.host'],
        (c) => seedFake(c.host, 'ks34-none'),
        2,
        /--name "\.host" is not a valid/,
      ],
      [
        'renaming an existing host',
        ['--name', 'other'],
        (c) => seedFake(c.host, 'ks34-host'),
        1,
        /already the host "host"; renaming it to "other" is refused/,
      ],
      [
        'a member cluster',
        [],
        (c) => seedFake(c.host, 'ks34-member'),
        1,
        /is a member cluster \("member1"\); a member cannot become a host/,
      ],
      [
        'a cluster without KubeSphere',
        [],
        (c) => seedFake(c.host, 'plain'),
        1,
        /KubeSphere is not installed in context "host"/,
      ],
      [
        'a bad --timeout',
        ['--timeout', 'forever'],
        (c) => seedFake(c.host, 'ks34-none'),
        2,
        /--timeout "forever" is not a duration/,
      ],
    ]
    for (const [name, argv, seed, exit, message] of cases) {
      it(name, async () => {
        seed(clusters)
        const {stderr, exitCode} = await hostInit(...argv)
        assert.equal(exitCode, exit, stderr)
        assert.match(stderr, message)
        assert.deepEqual(clusters.host.writes(), [])
        assert.deepEqual(clusters.member.requests, [])
      })
    }
  })
})
