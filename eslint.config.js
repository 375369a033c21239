// Lint configuration: typescript-eslint recommended rules plus the import direction of docs/ARCHITECTURE.md.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const layer = (files, forbidden, why) => ({
  files,
  rules: {
    'no-restricted-imports': ['error', { patterns: forbidden.map((group) => ({ group: [group], message: why })) }],
  },
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bin/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' } },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  // Imports flow one way: protocol, crypto -> net -> node / adapter / cloud -> cli.
  layer(['src/protocol/**', 'src/crypto/**', 'src/util/**', 'src/native/**'], ['**/net/**', '**/node/**', '**/cloud/**', '**/cli/**', '**/store/**', '**/adapter/**'], 'protocol/crypto/util/native are the bottom layer'),
  layer(['src/net/**'], ['**/node/**', '**/cloud/**', '**/cli/**', '**/adapter/**', '**/store/**'], 'net must not depend on daemons'),
  layer(['src/node/**'], ['**/cloud/**', '**/cli/**', '**/store/**'], 'node and cloud share only protocol, channel and crypto'),
  layer(['src/channel/**', 'src/config/**'], ['**/node/**', '**/cloud/**', '**/cli/**', '**/store/**', '**/adapter/**'], 'channel/config sit below the daemons'),
  layer(['src/cloud/**'], ['**/node/**', '**/cli/**', '**/adapter/**'], 'node and cloud share only protocol'),
  layer(['src/store/**'], ['**/node/**', '**/cloud/**', '**/cli/**', '**/adapter/**'], 'store is used by cloud, never the reverse'),
  layer(['src/policy/policy.ts'], ['**/net/**', '**/node/**', '**/cloud/**', '**/cli/**', '**/store/**', '**/adapter/**', './store.js', './admin.js'], 'the policy evaluator is pure (nodes use it too)'),
  layer(['src/adapter/**'], ['**/cloud/**', '**/cli/**', '**/store/**'], 'the adapter builds on net and node, never on the cloud or the store'),
  layer(['src/metrics/**'], ['**/net/**', '**/node/**', '**/cloud/**', '**/cli/**', '**/store/**', '**/adapter/**'], 'metrics read structural views; the daemons plug into it'),
  // Listed after src/adapter/**: for the same rule, the later block wins.
  layer(['src/adapter/lan/**'], ['**/node/**', '**/cloud/**', '**/cli/**', '**/store/**'], 'the LAN layer is pure codecs and state machines'),
);
