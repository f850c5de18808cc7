import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SettingError } from '../lib/errors';
import {
  MODEL_COLORS,
  PlotFigure,
  barChart,
  colorForSeries,
  figureHtml,
  formatCell,
  heatmap,
  lineChart,
  modelFamilyOf,
  pieChart,
  show,
  showTable,
  tableHtml,
} from '../lib/plots';

// tslab's display functions write through this module's `lastWriteDisplayData`, which the kernel
// sets before each cell. Tests set it to capture what a cell would display.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const tslabJupyter = require('tslab/dist/jupyter') as { lastWriteDisplayData: ((message: DisplayMessage) => void) | null };

interface DisplayMessage {
  data: Record<string, string>;
}

const PLOTLY_SENT = Symbol.for('modarch.plotlyBundleSent');

/** Runs `body` with a fake kernel and returns the text/html of everything it displayed. */
function captureDisplays(body: () => void): string[] {
  const displayed: string[] = [];
  tslabJupyter.lastWriteDisplayData = (message) => displayed.push(message.data['text/html']);
  try {
    body();
  } finally {
    tslabJupyter.lastWriteDisplayData = null;
  }
  return displayed;
}

function traceAttribute(figure: PlotFigure, traceIndex: number, name: string): unknown {
  return figure.data[traceIndex][name];
}

describe('model colors', () => {
  const cases: [string, string | undefined][] = [
    ['Monolithic', 'Monolithic'],
    ['modular', 'Modular'],
    ['Modular-op', 'Modular-op'],
    ['modular-op (R=8)', 'Modular-op'],
    ['GT-Modular', 'GT-Modular'],
    ['gt-modular', 'GT-Modular'],
    ['Modular 4 rules', 'Modular'],
    ['Modularity', undefined],
    ['random router', undefined],
  ];
  for (const [name, family] of cases) {
    test(`family of "${name}"`, () => assert.equal(modelFamilyOf(name), family));
  }

  test('series color follows family', () => {
    assert.equal(colorForSeries('Modular-op (R=2)'), MODEL_COLORS['Modular-op']);
    assert.notEqual(MODEL_COLORS.Modular, MODEL_COLORS['Modular-op']);
    assert.equal(new Set(Object.values(MODEL_COLORS)).size, 4);
  });
});

describe('chart builders', () => {
  test('line chart adds a band per curve with error', () => {
    const figure = lineChart(
      [
        { name: 'Modular', x: [0, 1, 2], y: [0.5, 0.6, 0.7], error: [0.1, 0.1, 0.1] },
        { name: 'Monolithic', x: [0, 1, 2], y: [0.4, 0.5, 0.6] },
      ],
      { title: 'Accuracy', xTitle: 'Step', yTitle: 'Accuracy' },
    );
    assert.equal(figure.data.length, 3);
    assert.equal(traceAttribute(figure, 0, 'fill'), 'toself');
    assert.deepEqual(traceAttribute(figure, 0, 'x'), [0, 1, 2, 2, 1, 0]);
    const bandY = traceAttribute(figure, 0, 'y') as number[];
    assert.deepEqual(
      bandY.map((value) => Math.round(value * 10) / 10),
      [0.6, 0.7, 0.8, 0.6, 0.5, 0.4],
    );
    assert.equal(traceAttribute(figure, 0, 'showlegend'), false);
    assert.equal(traceAttribute(figure, 0, 'legendgroup'), traceAttribute(figure, 1, 'legendgroup'));
    assert.deepEqual((traceAttribute(figure, 1, 'line') as { color: string }).color, MODEL_COLORS.Modular);
    assert.deepEqual((figure.layout.title as { text: string }).text, 'Accuracy');
    assert.deepEqual(((figure.layout.xaxis as { title: { text: string } }).title).text, 'Step');
  });

  test('line chart rejects mismatched lengths', () => {
    assert.throws(() => lineChart([{ name: 'Modular', x: [0, 1], y: [1] }]), (error: unknown) => {
      assert.ok(error instanceof SettingError);
      assert.equal(error.setting, 'curves[0].y.length');
      return true;
    });
  });

  test('line chart rejects infinite values', () => {
    assert.throws(() => lineChart([{ name: 'Modular', x: [0, 1], y: [1, Infinity] }]), /curves\[0\]\.y\[1\]/);
  });

  test('bar chart draws baseline and error bars', () => {
    const figure = barChart(
      [2, 4],
      [
        { name: 'Modular', values: [0.9, 0.8], errors: [0.01, 0.02] },
        { name: 'GT-Modular', values: [0.95, 0.9] },
      ],
      { baseline: { value: 0.5, label: 'random router baseline' } },
    );
    assert.deepEqual(traceAttribute(figure, 0, 'x'), ['2', '4']);
    assert.deepEqual((traceAttribute(figure, 0, 'error_y') as { array: number[] }).array, [0.01, 0.02]);
    assert.equal(traceAttribute(figure, 1, 'error_y'), undefined);
    assert.equal(figure.layout.barmode, 'group');
    const [line] = figure.layout.shapes as { y0: number; y1: number; xref: string }[];
    assert.equal(line.y0, 0.5);
    assert.equal(line.y1, 0.5);
    assert.equal(line.xref, 'paper');
    const [label] = figure.layout.annotations as { text: string }[];
    assert.equal(label.text, 'random router baseline');
  });

  test('bar chart rejects wrong value count', () => {
    assert.throws(() => barChart(['a', 'b'], [{ name: 'Modular', values: [1] }]), /series\[0\]\.values\.length/);
  });

  test('heatmap writes values and reverses rows', () => {
    const figure = heatmap(
      [
        [1, 0],
        [0.25, 0.75],
      ],
      { xLabels: ['rule 1', 'rule 2'], yLabels: ['module 1', 'module 2'], xTitle: 'Rule', yTitle: 'Module', valueDigits: 1 },
    );
    assert.equal(traceAttribute(figure, 0, 'texttemplate'), '%{z:.1f}');
    assert.deepEqual(traceAttribute(figure, 0, 'y'), ['module 1', 'module 2']);
    assert.equal((figure.layout.yaxis as { autorange: string }).autorange, 'reversed');
    assert.equal(((figure.layout.yaxis as { title: { text: string } }).title).text, 'Module');
  });

  test('heatmap rejects ragged rows', () => {
    assert.throws(() => heatmap([[1, 2], [3]]), /z\[1\]\.length/);
  });

  test('heatmap rejects wrong label count', () => {
    assert.throws(() => heatmap([[1, 2]], { xLabels: ['a'] }), /xLabels\.length/);
  });

  test('pie chart uses family colors', () => {
    const figure = pieChart([
      { label: 'Modular', value: 3 },
      { label: 'other', value: 1 },
    ]);
    const colors = (traceAttribute(figure, 0, 'marker') as { colors: string[] }).colors;
    assert.equal(colors[0], MODEL_COLORS.Modular);
    assert.equal(figure.layout.xaxis, undefined);
  });

  test('pie chart rejects negative values', () => {
    assert.throws(() => pieChart([{ label: 'a', value: -1 }]), /slices\[0\]\.value/);
  });
});

describe('figure HTML', () => {
  test('escapes script end inside titles', () => {
    const html = figureHtml(lineChart([{ name: 'a', x: [0], y: [1] }], { title: '</script><b>bold</b>' }));
    assert.equal(html.match(/<\/script>/g)?.length, 1);
    assert.ok(html.includes('\\u003c/script>\\u003cb>bold'));
  });

  test('includes bundle only when asked', () => {
    const figure = pieChart([{ label: 'a', value: 1 }]);
    assert.ok(!figureHtml(figure).includes('plotly.js v'));
    assert.ok(figureHtml(figure, { includePlotly: true }).includes('plotly.js v'));
  });

  test('show sends bundle with first plot only', () => {
    delete (globalThis as Record<symbol, unknown>)[PLOTLY_SENT];
    const figure = pieChart([{ label: 'a', value: 1 }]);
    const displayed = captureDisplays(() => {
      showTable([{ a: 1 }]);
      show(figure);
      show(figure);
    });
    assert.equal(displayed.length, 3);
    assert.ok(!displayed[0].includes('plotly.js v'), 'the table carries the bundle');
    assert.ok(displayed[1].includes('plotly.js v'), 'the first plot lacks the bundle');
    assert.ok(!displayed[2].includes('plotly.js v'), 'the second plot carries the bundle again');
    assert.ok(displayed[2].includes('class="modarch-plot"'));
  });

  test('show outside a kernel throws', () => {
    tslabJupyter.lastWriteDisplayData = null;
    assert.throws(() => show(pieChart([{ label: 'a', value: 1 }])), /only inside the tslab Jupyter kernel/);
  });
});

describe('tables', () => {
  const cases: [unknown, string][] = [
    [12345, '12,345'],
    [0.912345, '0.9123'],
    [12.3456, '12.35'],
    [1234.5678, '1,235'],
    [0.00001234, '1.23e-5'],
    [25_000_000, '25,000,000'],
    [25_000_000.5, '2.50e+7'],
    [0, '0'],
    [NaN, 'NaN'],
    [-Infinity, '−∞'],
    [null, ''],
    [undefined, ''],
    [true, 'true'],
    ['text', 'text'],
    [{ rules: 4 }, '{"rules":4}'],
  ];
  for (const [value, expected] of cases) {
    test(`formats ${String(value)}`, () => assert.equal(formatCell(value), expected));
  }

  test('table escapes HTML and aligns numbers', () => {
    const html = tableHtml([
      { model: '<b>Modular</b>', accuracy: 0.5 },
      { model: 'Monolithic', loss: 1 },
    ]);
    assert.ok(html.includes('&lt;b&gt;Modular&lt;/b&gt;'));
    assert.ok(html.includes('<th>model</th><th class="number">accuracy</th><th class="number">loss</th>'));
    assert.ok(html.includes('<tr><td>Monolithic</td><td class="number"></td><td class="number">1</td></tr>'));
  });

  test('table shows a non-default DataFrame index', () => {
    const html = tableHtml({ columns: ['accuracy'], values: [[0.5], [0.75]], index: ['Modular', 'Monolithic'] });
    assert.ok(html.includes('<th></th><th class="number">accuracy</th>'));
    assert.ok(html.includes('<tr><td>Modular</td><td class="number">0.5</td></tr>'));
  });

  test('table hides a default DataFrame index', () => {
    const html = tableHtml({ columns: ['accuracy'], values: [[0.5], [0.75]], index: [0, 1] });
    assert.ok(html.includes('<thead><tr><th class="number">accuracy</th></tr></thead>'));
  });

  test('table cuts rows past maxRows', () => {
    const rows = Array.from({ length: 5 }, (_, i) => ({ i }));
    const html = tableHtml(rows, { maxRows: 2 });
    assert.equal(html.match(/<tr><td/g)?.length, 2);
    assert.ok(html.includes('3 more rows not shown'));
  });
});
