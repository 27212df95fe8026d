import path from 'node:path'

import {Flags} from '@oclif/core'

import {BaseCommand} from '../../src/cli/base-command.js'
import {DEFAULT_DIR} from '../../src/playground/state.js'
import {playgroundStatus, renderPlaygroundStatus, type PlaygroundStatus} from '../../src/playground/status.js'

export default class PlaygroundStatusCommand extends BaseCommand<typeof PlaygroundStatusCommand> {
  static override summary =
    "Show the playground's processes, their addresses, and the member Cluster's conditions."

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
  ]

  static override flags = {
    dir: Flags.string({description: 'directory of the playground', default: DEFAULT_DIR}),
  }

  async run(): Promise<PlaygroundStatus> {
    const status = await playgroundStatus(path.resolve(this.flags.dir), this.timeoutMs)
    this.print(renderPlaygroundStatus(status))
    return status
  }
}
