import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {userInfo} from 'node:os'
import path from 'node:path'

import {ensureDebianPrograms} from '../install.js'
import {
  acceptsConnections,
  freePort,
  runCommand,
  startProcess,
  waitUntil,
  type ManagedProcess,
} from '../processes.js'
import type {BenchPath} from './path.js'
import {removeDirectory, temporaryDirectory, waitForEndpoint} from './tunnel-process.js'

const sshd = '/usr/sbin/sshd'
const ssh = '/usr/bin/ssh'
const sshKeygen = '/usr/bin/ssh-keygen'
// sshd refuses to start as root without its privilege-separation directory, which only the system's
// service unit would create; it is an empty directory and changes nothing of the system's sshd.
const privilegeSeparationDirectory = '/run/sshd'

async function generateKey(file: string): Promise<void> {
  const result = await runCommand(sshKeygen, ['-q', '-t', 'ed25519', '-N', '', '-f', file])
  if (result.code !== 0) throw new Error(`ssh-keygen failed: ${result.output}`)
}

/** An OpenSSH reverse tunnel: a throwaway sshd on loopback, and `ssh -R` next to the upstream. */
export const opensshPath: BenchPath = {
  name: 'openssh',
  prepare: () =>
    ensureDebianPrograms({[sshd]: 'openssh-server', [ssh]: 'openssh-client', [sshKeygen]: 'openssh-client'}),
  start: async (upstream) => {
    const directory = await temporaryDirectory('openssh')
    const processes: ManagedProcess[] = []
    try {
      if (process.getuid?.() === 0) await mkdir(privilegeSeparationDirectory, {recursive: true})
      const hostKey = path.join(directory, 'host_ed25519')
      const clientKey = path.join(directory, 'client_ed25519')
      await generateKey(hostKey)
      await generateKey(clientKey)
      await writeFile(path.join(directory, 'authorized_keys'), await readFile(`${clientKey}.pub`, 'utf8'))
      const sshPort = await freePort()
      const config = path.join(directory, 'sshd_config')
      await writeFile(
        config,
        [
          `Port ${sshPort}`,
          'ListenAddress 127.0.0.1',
          `HostKey ${hostKey}`,
          `PidFile ${path.join(directory, 'sshd.pid')}`,
          `AuthorizedKeysFile ${path.join(directory, 'authorized_keys')}`,
          // The temp dir's modes are not what StrictModes expects of a home directory.
          'StrictModes no',
          'PubkeyAuthentication yes',
          'PasswordAuthentication no',
          'KbdInteractiveAuthentication no',
          'UsePAM no',
          'PermitRootLogin prohibit-password',
          'AllowTcpForwarding remote',
          'GatewayPorts no',
          'X11Forwarding no',
          'PermitTTY no',
          '',
        ].join('\n'),
      )
      const server = startProcess('sshd', sshd, ['-D', '-e', '-f', config])
      processes.push(server)
      await waitUntil('sshd to listen', 10_000, async () => {
        if (!server.running) throw new Error(`sshd exited: ${server.output()}`)
        return acceptsConnections(sshPort)
      })
      const tunnelPort = await freePort()
      function startClient(): ManagedProcess {
        return startProcess('ssh -R', ssh, [
          '-N',
          '-F',
          '/dev/null',
          '-i',
          clientKey,
          '-p',
          String(sshPort),
          '-o',
          'BatchMode=yes',
          '-o',
          'ExitOnForwardFailure=yes',
          '-o',
          'StrictHostKeyChecking=no',
          '-o',
          'UserKnownHostsFile=/dev/null',
          '-o',
          'LogLevel=ERROR',
          '-R',
          `127.0.0.1:${tunnelPort}:127.0.0.1:${upstream.httpPort}`,
          `${userInfo().username}@127.0.0.1`,
        ])
      }
      let client = startClient()
      processes.push(client)
      // Like autossh: a restarted ssh whose -R port sshd has not released yet exits, and is started again.
      let respawn = false
      function superviseClient(): void {
        client = startClient()
        const started = client
        void started.waitForExit().then(() => {
          if (respawn && started === client) setTimeout(superviseClient, 100)
        })
      }
      const endpoint = {baseUrl: `http://127.0.0.1:${tunnelPort}`}
      await waitForEndpoint(endpoint, processes)

      return {
        endpoint,
        processes: () => [
          {side: 'server', label: 'sshd', pid: server.pid},
          {side: 'agent', label: 'ssh', pid: client.pid},
        ],
        agentRestart: {
          kill: async () => {
            respawn = false
            await client.kill()
          },
          start: async () => {
            respawn = true
            superviseClient()
          },
        },
        stop: async () => {
          respawn = false
          await client.stop()
          await server.stop()
          await removeDirectory(directory)
        },
      }
    } catch (error) {
      await Promise.all(processes.map((process) => process.stop()))
      await removeDirectory(directory)
      throw error
    }
  },
}
