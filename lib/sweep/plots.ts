import { pieChart, PlotFigure } from '../plots';
import { WinTally } from './results';

/**
 * Builds a pie chart of the share of settings each model wins, from a tally of `winShares`.
 * Models without wins keep their legend entry with a zero slice.
 */
export function winShareFigure(tally: WinTally, title: string): PlotFigure {
  const slices = Object.entries(tally.wins).map(([label, wins]) => ({ label, value: wins }));
  return pieChart(slices, { title: `${title} (${tally.settings} settings)`, height: 380 });
}
